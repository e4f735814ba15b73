-- POST one-off instances; the controller names them run-<id>.
wrk.method = "POST"
wrk.body = '{"image":"bench","resources":{"vcpus":1,"memory_mib":64}}'
wrk.headers["Content-Type"] = "application/json"
dofile(os.getenv("REPORT_LUA"))
