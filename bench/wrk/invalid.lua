-- POST creates the API must refuse (422: memory_mib below the minimum).
wrk.method = "POST"
wrk.body = '{"image":"bench","resources":{"vcpus":1,"memory_mib":1}}'
wrk.headers["Content-Type"] = "application/json"
dofile(os.getenv("REPORT_LUA"))
