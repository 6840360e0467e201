-- wrk script for bench/run.sh: POSTs one authenticated MCP `tools/call add`
-- and checks EVERY response: the status must be 2xx and the body must carry
-- the right sum (and not be a tool error). Counts are printed by done() on a
-- single RESULT line that run.sh parses; a run with any failure is failed.
--
--   wrk -t2 -c32 -d5s -s bench/wrk/mcp_add.lua http://127.0.0.1:PORT/mcp -- A B TOKEN
--
-- TOKEN may be "-" for no Authorization header (the ceiling).

local a, b, token

function init(args)
  a = tonumber(args[1])
  b = tonumber(args[2])
  token = args[3]
  sum = string.format("%d", a + b)
  -- "result": SUM followed by a non-digit, with optional spaces (FastMCP
  -- and passgate serialize slightly differently).
  pattern = '"result"%s*:%s*' .. sum:gsub("%-", "%%-") .. "[^%d]"
  wrk.method = "POST"
  wrk.body = string.format(
    '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":%d,"b":%d}}}',
    a, b)
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Accept"] = "application/json, text/event-stream"
  wrk.headers["MCP-Protocol-Version"] = "2025-06-18"
  if token ~= nil and token ~= "-" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
  ok, bad_status, bad_body, sample = 0, 0, 0, nil
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    bad_status = bad_status + 1
    if sample == nil then sample = status .. " " .. (body or "") end
  elseif body == nil or not string.find(body, pattern)
      or string.find(body, '"isError"%s*:%s*true') then
    bad_body = bad_body + 1
    if sample == nil then sample = status .. " " .. (body or "") end
  else
    ok = ok + 1
  end
end

-- Per-thread counters, gathered in done().
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
