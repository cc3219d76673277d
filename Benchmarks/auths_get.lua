-- wrk script: GET /api/v1/auths/ (the session user) with a Bearer token.
-- The token comes from BENCH_TOKEN, or from the file named by BENCH_TOKEN_FILE.
--   BENCH_TOKEN=eyJ... wrk -t2 -c32 -d30s --latency -s auths_get.lua http://127.0.0.1:8080/api/v1/auths/
local bench = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "bench.lua")
bench.authorized("GET", "auths_get.lua")
