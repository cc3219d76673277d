-- wrk script: GET /api/v1/chats/?page=1 (the first 60 of the session user's chats, titles only) with a
-- Bearer token. The token comes from BENCH_TOKEN, or from the file named by BENCH_TOKEN_FILE.
--   BENCH_TOKEN=eyJ... wrk -t2 -c32 -d30s --latency -s chats_list.lua 'http://127.0.0.1:8080/api/v1/chats/?page=1'
local token = os.getenv("BENCH_TOKEN")
if (token == nil or token == "") and os.getenv("BENCH_TOKEN_FILE") then
  local f = io.open(os.getenv("BENCH_TOKEN_FILE"), "r")
  if f then token = f:read("*l"); f:close() end
end
if token == nil or token == "" then
  io.stderr:write("chats_list.lua: set BENCH_TOKEN (or BENCH_TOKEN_FILE) to a JWT\n")
  os.exit(1)
end

wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Accept"] = "application/json"
