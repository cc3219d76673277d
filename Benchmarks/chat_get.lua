-- wrk script: GET /api/v1/chats/<id> (one whole chat of the session user) with a Bearer token.
-- The token comes from BENCH_TOKEN (or the file named by BENCH_TOKEN_FILE), the chat id from BENCH_CHAT_ID
-- (or the file named by BENCH_CHAT_ID_FILE, which prepare.py writes). The id replaces the URL's path, so
-- any URL of the server will do:
--   BENCH_TOKEN=eyJ... BENCH_CHAT_ID=0f3e... wrk -t2 -c32 -d30s --latency -s chat_get.lua http://127.0.0.1:8080/api/v1/chats/
local function setting(name)
  local value = os.getenv(name)
  if (value == nil or value == "") and os.getenv(name .. "_FILE") then
    local f = io.open(os.getenv(name .. "_FILE"), "r")
    if f then value = f:read("*l"); f:close() end
  end
  if value == nil or value == "" then
    io.stderr:write("chat_get.lua: set " .. name .. " (or " .. name .. "_FILE)\n")
    os.exit(1)
  end
  return value
end

local token = setting("BENCH_TOKEN")
local chat_id = setting("BENCH_CHAT_ID")

wrk.method = "GET"
wrk.path = "/api/v1/chats/" .. chat_id
wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Accept"] = "application/json"
