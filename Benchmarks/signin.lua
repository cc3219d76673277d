-- wrk script: POST /api/v1/auths/signin, rotating over the users prepare.py created
-- (sign-in is limited to 15 attempts per 3 minutes per e-mail, so one e-mail is not enough).
--   wrk -t2 -c32 -d30s --timeout 30s --latency -s signin.lua http://127.0.0.1:8080/api/v1/auths/signin
-- Environment (same defaults as prepare.py): BENCH_USERS, BENCH_USER_PREFIX, BENCH_USER_DOMAIN,
-- BENCH_USER_PASSWORD. Every request costs the server one bcrypt verification: CPU bound.
local users    = tonumber(os.getenv("BENCH_USERS") or "200")
local prefix   = os.getenv("BENCH_USER_PREFIX") or "bench-user-"
local domain   = os.getenv("BENCH_USER_DOMAIN") or "example.com"
local password = os.getenv("BENCH_USER_PASSWORD") or "skiff-bench-user"

local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }
local next_user = 0
ok, limited, other = 0, 0, 0

function init(args)
  -- Threads start at different points of the ring so e-mails are spread evenly.
  next_user = ((tid or 0) * 7919) % users
end

function request()
  local body = string.format('{"email":"%s%d@%s","password":"%s"}', prefix, next_user, domain, password)
  next_user = (next_user + 1) % users
  return wrk.format("POST", nil, headers, body)
end

function response(status, hdrs, body)
  if status == 200 then ok = ok + 1
  elseif status == 429 then limited = limited + 1
  else other = other + 1 end
end

function done(summary, latency, requests)
  local o, l, x = 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + (t:get("ok") or 0); l = l + (t:get("limited") or 0); x = x + (t:get("other") or 0)
  end
  io.write(string.format("signin statuses: 200=%d 429=%d other=%d (users in rotation: %d)\n", o, l, x, users))
end
