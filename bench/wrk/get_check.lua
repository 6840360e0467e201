-- wrk script for bench/run.sh: GETs the URL and checks EVERY response: the
-- status must be 2xx and the body must contain the expected text (plain
-- substring, first script argument). Prints one RESULT line, like
-- mcp_add.lua.
--
--   wrk -t2 -c32 -d5s -s bench/wrk/get_check.lua URL -- '"issuer":"http://127.0.0.1:18080"'

function init(args)
  expected = args[1]
  ok, bad_status, bad_body, sample = 0, 0, 0, nil
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    bad_status = bad_status + 1
    if sample == nil then sample = status .. " " .. (body or "") end
  elseif body == nil or not string.find(body, expected, 1, true) then
    bad_body = bad_body + 1
    if sample == nil then sample = status .. " " .. (body or "") end
  else
    ok = ok + 1
  end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local n_ok, n_status, n_body, first = 0, 0, 0, nil
  for _, t in ipairs(threads) do
    n_ok = n_ok + (t:get("ok") or 0)
    n_status = n_status + (t:get("bad_status") or 0)
    n_body = n_body + (t:get("bad_body") or 0)
    first = first or t:get("sample")
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d ok=%d bad_status=%d bad_body=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_timeout=%d err_status=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), n_ok, n_status, n_body,
    e.connect, e.read, e.write, e.timeout, e.status))
  if first ~= nil then
    io.write("SAMPLE " .. string.sub(first, 1, 400):gsub("\n", " ") .. "\n")
  end
end
