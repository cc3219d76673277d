-- wrk script: GET /api/v1/chats/<id> (one whole chat of the session user) with a Bearer token.
-- The token comes from BENCH_TOKEN (or the file named by BENCH_TOKEN_FILE), the chat id from BENCH_CHAT_ID
-- (or the file named by BENCH_CHAT_ID_FILE, which prepare.py writes). The id replaces the URL's path, so
-- any URL of the server will do:
--   BENCH_TOKEN=eyJ... BENCH_CHAT_ID=0f3e... wrk -t2 -c32 -d30s --latency -s chat_get.lua http://127.0.0.1:8080/api/v1/chats/
local bench = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "bench.lua")
bench.authorized("GET", "chat_get.lua")
wrk.path = "/api/v1/chats/" .. bench.setting("BENCH_CHAT_ID", "chat_get.lua")
