-- wrk script: POST /api/v1/chats/new with a small chat (every request creates a chat of the session user)
-- and a Bearer token from BENCH_TOKEN (or the file named by BENCH_TOKEN_FILE).
--   BENCH_TOKEN=eyJ... wrk -t2 -c32 -d30s --latency -s chat_new.lua http://127.0.0.1:8080/api/v1/chats/new
-- wrk's "Non-2xx or 3xx responses" line counts only statuses >= 400, so this script counts every answer
-- other than 200 itself and prints "Non-200 responses: N" (run.sh reports that figure).
local bench = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "bench.lua")
bench.authorized("POST", "chat_new.lua")
wrk.body = '{"chat":{"title":"wrk","models":["m"],"messages":[],"history":{"messages":{},"currentId":null}}}'
wrk.headers["Content-Type"] = "application/json"

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

ok, other, first_other = 0, 0, nil

function response(status, hdrs, body)
  if status == 200 then
    ok = ok + 1
  else
    other = other + 1
    if first_other == nil then first_other = tostring(status) end
  end
end

function done(summary, latency, requests)
  local o, x, first = 0, 0, nil
  for _, t in ipairs(threads) do
    o = o + (t:get("ok") or 0); x = x + (t:get("other") or 0)
    first = first or t:get("first_other")
  end
  io.write(string.format("chat_new statuses: 200=%d other=%d%s\n", o, x,
    first and (" (first other: " .. first .. ")") or ""))
  io.write(string.format("Non-200 responses: %d\n", x))
end
