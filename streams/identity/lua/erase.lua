-- Touchpoint identity graph: erase the whole component of one identifier (invariant 5).
-- ARGV = ns ("<namespace>:"), "type:value"
-- Removes every identifier mapping, the profile, its provenance, forwards to it and breaker state,
-- and writes a suppression entry (keyed by SHA-1, not the value) for each identifier so that replayed
-- events cannot bring the person back. Reply = {profile_id|false, {"type:value", ...}, {forwarded ids}}.
local ns, f = ARGV[1], ARGV[2]
__KEYS__
local pid = redis.call('GET', K_ID .. f)
local idents, losers = {f}, {}
if pid then
  idents = redis.call('HKEYS', K_P .. pid)
  losers = redis.call('SMEMBERS', K_PL .. pid)
end
for _, x in ipairs(idents) do
  redis.call('DEL', K_ID .. x, K_DEG .. x, K_LNK .. x, K_QUAR .. x)
  redis.call('SET', K_SUPP .. redis.sha1hex(x), '1')
end
for _, L in ipairs(losers) do
  redis.call('DEL', K_FWD .. L)
end
if pid then
  redis.call('DEL', K_P .. pid, K_PM .. pid, K_PE .. pid, K_PL .. pid)
end
return {pid or false, idents, losers}
