-- Touchpoint identity graph: dedup + resolve ONE event atomically (invariants 2, 3, 4, 5).
-- The rule numbers are embedded by streams/identity/redis_graph.py (so a rule set = a script SHA).
-- KEYS[1] = <ns>dedup:<message_id>
-- ARGV    = ns ("<namespace>:"), dedup ttl (s), claim, ts_ms, then type1, value1, type2, value2, ...
--           identifiers already without blocked values and sorted by priority (rules.prepare).
-- Reply   = {"duplicate"} | {outcome, profile_id|false, json|false} | {"=", stored reply}
--           json = {"m": [losers in merge order], "c": [audit records without message_id/ts/profile_id]}
-- Single-instance Redis: keys other than KEYS[1] are derived inside (use a {hash-tag} namespace on a cluster).
local CFG = __RULES__

local ns, ttl, claim, ts = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local msg = string.sub(KEYS[1], #ns + 7)  -- the message id: KEYS[1] is ns .. 'dedup:' .. message_id
local SEP = '\31'

-- Dedup first: another claim on this message id = duplicate (invariant 2); our own claim =
-- redelivery after a crash before the offset commit: replay the stored reply, or re-run.
-- The value is the claim, followed (SEP outcome SEP profile) for a trivial resolution, whose
-- reply is not stored in dres: a redelivery reports the profile first reported, not the
-- current survivor (else an event already folded into a since-merged profile would be folded
-- again into the survivor before the merged state arrives there).
local prev = redis.call('SET', KEYS[1], claim, 'NX', 'EX', ttl, 'GET')
local prev_claim, prev_outcome, prev_pid = prev, nil, nil
if prev then
  local a = string.find(prev, SEP, 1, true)
  if a then
    local b = string.find(prev, SEP, a + 1, true)
    prev_claim, prev_outcome, prev_pid = string.sub(prev, 1, a - 1), string.sub(prev, a + 1, b - 1), string.sub(prev, b + 1)
  end
end
if prev and prev_claim ~= claim then
  return {'duplicate'}
end

local cands = {}
for i = 5, #ARGV, 2 do
  local t, v = ARGV[i], ARGV[i + 1]
  cands[#cands + 1] = {t = t, v = v, f = t .. ':' .. v}
end

-- Erased people stay erased (invariant 5): any suppressed identifier drops the whole event.
for _, c in ipairs(cands) do
  if redis.call('EXISTS', ns .. 'supp:' .. redis.sha1hex(c.f)) == 1 then
    return {'erased', false, false}
  end
end

if prev then
  local stored = redis.call('GET', ns .. 'dres:' .. msg)
  if stored then return {'=', stored} end
  if prev_pid then return {prev_outcome, prev_pid, false} end
end

local function limit_of(t)
  return CFG.limit[t] or CFG.default_limit
end

local function sorted_keys(tbl)
  local ks = {}
  for k in pairs(tbl) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

local meta_cache = {}
local function meta(pid)
  local m = meta_cache[pid]
  if m then return m end
  local flat = redis.call('HGETALL', ns .. 'pm:' .. pid)
  local counts, uniq = {}, {}
  for i = 1, #flat, 2 do
    local k, val = flat[i], flat[i + 1]
    if string.sub(k, 1, 2) == 'n:' then counts[string.sub(k, 3)] = tonumber(val)
    else uniq[string.sub(k, 3)] = val end
  end
  m = {counts = counts, uniq = uniq}
  meta_cache[pid] = m
  return m
end

-- Current owner and quarantine flag of every candidate, read once.
local live = {}
for _, c in ipairs(cands) do
  if redis.call('EXISTS', ns .. 'quar:' .. c.f) == 0 then
    c.pid = redis.call('GET', ns .. 'id:' .. c.f)
    live[#live + 1] = c
  end
end

-- One planning pass in priority order: the stronger identifier wins every conflict.
local function plan(list)
  local group, order, U, C = {}, {}, {}, {}
  local attach, mapped, audits = {}, {}, {}
  for _, c in ipairs(list) do
    local t, v, pid = c.t, c.v, c.pid
    if pid then
      if group[pid] then
        mapped[#mapped + 1] = c
      elseif CFG.nomerge[t] and #order > 0 then
        audits[#audits + 1] = {type = 'conflict', rule = 'no_merge:' .. t, identifiers = {c.f}, from_profile_id = pid}
      else
        local m = meta(pid)
        local bad = nil
        for _, ut in ipairs(CFG.unique_list) do
          local uv = m.uniq[ut]
          if uv and U[ut] and U[ut] ~= uv then bad = ut break end
        end
        if bad then
          audits[#audits + 1] = {type = 'conflict', rule = 'unique:' .. bad, identifiers = {c.f}, from_profile_id = pid}
        else
          local over = nil
          for _, lt in ipairs(sorted_keys(m.counts)) do
            if (C[lt] or 0) + m.counts[lt] > limit_of(lt) then over = lt break end
          end
          if over then
            audits[#audits + 1] = {type = 'blocked', rule = 'limit:' .. over, identifiers = {c.f}, from_profile_id = pid}
          else
            group[pid] = c.f
            order[#order + 1] = pid
            mapped[#mapped + 1] = c
            for ut, uv in pairs(m.uniq) do U[ut] = uv end
            for lt, n in pairs(m.counts) do C[lt] = (C[lt] or 0) + n end
          end
        end
      end
    else
      if CFG.unique[t] and U[t] and U[t] ~= v then
        audits[#audits + 1] = {type = 'conflict', rule = 'unique:' .. t, identifiers = {c.f}}
      elseif (C[t] or 0) + 1 > limit_of(t) then
        audits[#audits + 1] = {type = 'blocked', rule = 'limit:' .. t, identifiers = {c.f}}
      else
        C[t] = (C[t] or 0) + 1
        if CFG.unique[t] then U[t] = v end
        attach[#attach + 1] = c
      end
    end
  end
  return group, order, attach, mapped, audits
end

-- Supernode breaker: an identifier that would bridge more than N merges is quarantined and
-- the event is planned again without it (invariant 4).
local quarantined = {}
local group, order, attach, mapped, audits
while true do
  group, order, attach, mapped, audits = plan(live)
  if CFG.supernode < 0 or #order < 2 then break end
  local k = #order - 1
  local hit = {}
  for _, c in ipairs(mapped) do
    if not (CFG.unique[c.t] or CFG.nomerge[c.t]) then
      local d = tonumber(redis.call('GET', ns .. 'deg:' .. c.f) or '0')
      if d + k > CFG.supernode then hit[c.f] = true end
    end
  end
  if next(hit) == nil then break end
  local rest = {}
  for _, c in ipairs(live) do
    if hit[c.f] then
      redis.call('SET', ns .. 'quar:' .. c.f, msg)
      quarantined[#quarantined + 1] = {type = 'quarantined', rule = 'supernode', identifiers = {c.f}, from_profile_id = c.pid}
    else
      rest[#rest + 1] = c
    end
  end
  live = rest
end

local changes = quarantined
for _, a in ipairs(audits) do changes[#changes + 1] = a end

local function reply(outcome, pid, merged)
  if #changes == 0 and #merged == 0 then
    if pid then redis.call('SET', KEYS[1], claim .. SEP .. outcome .. SEP .. pid, 'XX', 'KEEPTTL') end
    return {outcome, pid or false, false}
  end
  local body = cjson.encode({m = merged, c = changes})
  redis.call('SET', ns .. 'dres:' .. msg, outcome .. SEP .. (pid or '') .. SEP .. body, 'EX', ttl)
  return {outcome, pid or false, body}
end

if #order == 0 and #attach == 0 then
  return reply('blocked', nil, {})
end

local function seq_of(pid) return tonumber(string.sub(pid, 2), 36) end
local D = '0123456789abcdefghijklmnopqrstuvwxyz'
local function pid_of(n)
  local s = ''
  repeat
    local r = n % 36
    s = string.sub(D, r + 1, r + 1) .. s
    n = (n - r) / 36
  until n == 0
  return 'p' .. s
end

-- HSET/RPUSH in chunks: unpack() has a small stack limit.
local function push_chunked(cmd, key, items)
  local i = 1
  while i <= #items do
    local j = math.min(i + 999, #items)
    redis.call(cmd, key, unpack(items, i, j))
    i = j + 1
  end
end

local S
local created = false
if #order == 0 then
  S = pid_of(redis.call('INCR', ns .. 'seq'))
  created = true
else
  S = order[1]
  for _, pid in ipairs(order) do
    if seq_of(pid) < seq_of(S) then S = pid end
  end
end

local anchor = mapped[1] or attach[1]
local pS, pmS, peS, plS = ns .. 'p:' .. S, ns .. 'pm:' .. S, ns .. 'pe:' .. S, ns .. 'pl:' .. S

-- Merge: the older profile (smaller sequence) survives; losers are folded in, oldest first.
local losers = {}
for _, pid in ipairs(order) do
  if pid ~= S then losers[#losers + 1] = pid end
end
table.sort(losers, function(a, b) return seq_of(a) < seq_of(b) end)
for _, L in ipairs(losers) do
  local pL = ns .. 'p:' .. L
  local flat = redis.call('HGETALL', pL)
  for i = 1, #flat, 2 do
    redis.call('SET', ns .. 'id:' .. flat[i], S)
  end
  push_chunked('HSET', pS, flat)
  local mflat = redis.call('HGETALL', ns .. 'pm:' .. L)
  for i = 1, #mflat, 2 do
    if string.sub(mflat[i], 1, 2) == 'n:' then redis.call('HINCRBY', pmS, mflat[i], mflat[i + 1])
    else redis.call('HSET', pmS, mflat[i], mflat[i + 1]) end
  end
  push_chunked('RPUSH', peS, redis.call('LRANGE', ns .. 'pe:' .. L, 0, -1))
  local fwd = redis.call('SMEMBERS', ns .. 'pl:' .. L)
  fwd[#fwd + 1] = L
  for _, x in ipairs(fwd) do
    redis.call('SET', ns .. 'fwd:' .. x, S)
  end
  push_chunked('SADD', plS, fwd)
  redis.call('DEL', pL, ns .. 'pm:' .. L, ns .. 'pe:' .. L, ns .. 'pl:' .. L)
end

-- Bridges: the anchor (strongest accepted, already mapped identifier) joins every other profile
-- of the group; recorded once per merge as provenance for why().
local merged = {}
if #order >= 2 then
  for _, pid in ipairs(order) do
    if pid ~= anchor.pid then
      redis.call('RPUSH', peS, anchor.f .. SEP .. group[pid] .. SEP .. msg .. SEP .. 'co_occurrence' .. SEP .. ts)
    end
  end
  -- bridged: the identifiers whose breaker count (deg) this event raises by 1 per merged record,
  -- so `touchpoint identity rebuild` can restore deg:* from the audit trail alone.
  local bridged = {}
  if CFG.supernode >= 0 then
    for _, c in ipairs(mapped) do
      if not (CFG.unique[c.t] or CFG.nomerge[c.t]) then bridged[#bridged + 1] = c.f end
    end
  end
  for _, L in ipairs(losers) do
    local pair
    if L == anchor.pid then pair = {group[S], anchor.f} else pair = {anchor.f, group[L]} end
    local rec = {type = 'merged', rule = 'co_occurrence', identifiers = pair, from_profile_id = L}
    if #bridged > 0 then rec.bridged = bridged end
    changes[#changes + 1] = rec
    merged[#merged + 1] = L
  end
  if CFG.supernode >= 0 then
    for _, c in ipairs(mapped) do
      if not (CFG.unique[c.t] or CFG.nomerge[c.t]) then
        redis.call('INCRBY', ns .. 'deg:' .. c.f, #order - 1)
      end
    end
  end
end

-- Attach the new identifiers, each linked to the anchor with this event as provenance.
if #attach > 0 then
  local fs = {}
  for _, c in ipairs(attach) do
    local via, rule = anchor.f, 'co_occurrence'
    if c == anchor then via, rule = '', 'first_seen' end
    redis.call('SET', ns .. 'id:' .. c.f, S)
    redis.call('HSET', pS, c.f, via .. SEP .. msg .. SEP .. rule .. SEP .. ts)
    redis.call('HINCRBY', pmS, 'n:' .. c.t, 1)
    if CFG.unique[c.t] then redis.call('HSET', pmS, 'u:' .. c.t, c.v) end
    fs[#fs + 1] = c.f
  end
  if created then
    changes[#changes + 1] = {type = 'created', rule = 'first_seen', identifiers = fs}
  else
    -- via: the anchor the new identifiers are linked to (provenance; needed by identity rebuild)
    changes[#changes + 1] = {type = 'linked', rule = 'co_occurrence', identifiers = fs, via = anchor.f}
  end
end

return reply('applied', S, merged)
