-- Touchpoint identity graph: erase the whole component of one identifier (invariant 5).
-- ARGV = ns ("<namespace>:"), "type:value"[, erasure time ms (the suppression's value; default '1')]
-- Removes every identifier mapping, the profile, its provenance, forwards to it and breaker state,
-- and writes a suppression entry (keyed by SHA-1, not the value) for each identifier so that replayed
-- events cannot bring the person back. The stored replies (dres:) of the events recorded in the
-- profile's provenance go too: they name the person's identifiers, and a redelivery of one of those
-- events is dropped as erased before any stored reply would be read. Reply = {profile_id|false, {"type:value", ...}, {forwarded ids}}.
local ns, f, at = ARGV[1], ARGV[2], ARGV[3] or '1'
__KEYS__
local pid = redis.call('GET', K_ID .. f)
local idents, losers = {f}, {}
if pid then
  idents = redis.call('HKEYS', K_P .. pid)
  losers = redis.call('SMEMBERS', K_PL .. pid)
end
for _, x in ipairs(idents) do
  redis.call('DEL', K_ID .. x, K_DEG .. x, K_LNK .. x, K_QUAR .. x)
  redis.call('SET', K_SUPP .. redis.sha1hex(x), at)
end
for _, L in ipairs(losers) do
  redis.call('DEL', K_FWD .. L)
end
if pid then
  local SEP, find, sub = '\31', string.find, string.sub
  local mids = {}
  for _, v in ipairs(redis.call('HVALS', K_P .. pid)) do    -- via SEP msg SEP rule SEP ts
    local a = find(v, SEP, 1, true)
    local b = a and find(v, SEP, a + 1, true)
    if b then mids[sub(v, a + 1, b - 1)] = true end
  end
  for _, v in ipairs(redis.call('LRANGE', K_PE .. pid, 0, -1)) do  -- x SEP y SEP msg SEP rule SEP ts
    local a = find(v, SEP, 1, true)
    local b = a and find(v, SEP, a + 1, true)
    local c = b and find(v, SEP, b + 1, true)
    if c then mids[sub(v, b + 1, c - 1)] = true end
  end
  for m in pairs(mids) do redis.call('DEL', K_DRES .. m) end
  redis.call('DEL', K_P .. pid, K_PM .. pid, K_PE .. pid, K_PL .. pid)
end
return {pid or false, idents, losers}
