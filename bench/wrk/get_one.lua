-- GET one instance by id, ids picked at random from the seeded set.
local ids = {}
for line in io.lines(os.getenv("IDS_FILE")) do ids[#ids + 1] = line end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/v1/instances/" .. ids[math.random(#ids)])
end
dofile(os.getenv("REPORT_LUA"))
