-- Touchpoint identity graph: erase the whole component of one identifier (invariant 5).
-- ARGV = ns ("<namespace>:"), "type:value"[, erasure time ms (the suppression's value; default '1')]
-- Removes every identifier mapping, the profile, its provenance, forwards to it and breaker state,
-- and writes a suppression entry (keyed by SHA-1, not the value) for each identifier so that replayed
-- events cannot bring the person back. Reply = {profile_id|false, {"type:value", ...}, {forwarded ids}}.
local ns, f, at = ARGV[1], ARGV[2], ARGV[3] or '1'
local pid = redis.call('GET', ns .. 'id:' .. f)
local idents, losers = {f}, {}
if pid then
  idents = redis.call('HKEYS', ns .. 'p:' .. pid)
  losers = redis.call('SMEMBERS', ns .. 'pl:' .. pid)
end
for _, x in ipairs(idents) do
  redis.call('DEL', ns .. 'id:' .. x, ns .. 'deg:' .. x, ns .. 'lnk:' .. x, ns .. 'quar:' .. x)
  redis.call('SET', ns .. 'supp:' .. redis.sha1hex(x), at)
end
for _, L in ipairs(losers) do
  redis.call('DEL', ns .. 'fwd:' .. L)
end
if pid then
  redis.call('DEL', ns .. 'p:' .. pid, ns .. 'pm:' .. pid, ns .. 'pe:' .. pid, ns .. 'pl:' .. pid)
end
return {pid or false, idents, losers}
