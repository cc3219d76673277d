-- wrk script: GET /api/v1/chats/?page=1 (the first 60 of the session user's chats, titles only) with a
-- Bearer token. The token comes from BENCH_TOKEN, or from the file named by BENCH_TOKEN_FILE.
--   BENCH_TOKEN=eyJ... wrk -t2 -c32 -d30s --latency -s chats_list.lua 'http://127.0.0.1:8080/api/v1/chats/?page=1'
local bench = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "bench.lua")
bench.authorized("GET", "chats_list.lua")
