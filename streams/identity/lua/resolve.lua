-- Touchpoint identity graph: dedup + resolve events, each one atomically (invariants 2, 3, 4, 5).
-- The rule numbers are embedded by streams/identity/redis_graph.py (so a rule set = a script SHA).
-- One call resolves a run of consecutive events of a batch, one after the other, exactly as if
-- each had been its own call (same replies, same writes to each key in the same order); the whole
-- run is then one atomic step instead of one per event. Redis checks maxmemory (deny-oom) once per
-- script call, before its first write, and freezes the clock it expires keys by at the start of a
-- call: both now happen once per run instead of once per event.
-- KEYS    = the dedup key (K_DEDUP .. message_id) of each event, in order
-- ARGV    = ns ("<namespace>:"), dedup ttl (s), window slice (s), slices per window, then per event:
--           claim, ts_ms, n, shard, field, type1, value1, ..., type_n, value_n: shard and field of
--           the message id's digest (streams/identity/dedup_window.py), identifiers already without
--           blocked values and sorted by priority (rules.prepare).
-- Reply   = one entry per event: {"duplicate"} | {outcome, profile_id|false, json|false} |
--           {"=", stored reply} | an error (that event failed; its writes so far stay, like a
--           failed call of its own, and the next events still run)
--           json = {"m": [losers in merge order], "c": [audit records without message_id/ts/profile_id]}
-- Single-instance Redis: keys other than KEYS are derived inside (use a {hash-tag} namespace on a cluster);
-- their prefixes come from streams/identity/keys.py (filled into the line below ns).
--
-- Cost: Redis CPU is what an ingest batch waits for (bench/identity_bench.py). Per event the
-- script reads the dedup entry and the suppression, quarantine and owner keys of all identifiers
-- in one MGET; an event whose identifiers all belong to one profile (most traffic) then needs
-- only that profile's meta and one SET. Writes of several keys or list items are one MSET/RPUSH;
-- several hash fields are one HSET only where that leaves the very same hash (see hset_pairs);
-- per hash the commands are otherwise the same as before, one by one (the iteration order of a
-- hashtable-encoded hash depends on them). Scratch tables are reused across the events of a
-- call; the rule tables and functions are built once per call. A new message id costs the window
-- tier 4 HGET + HSETNX + HLEN (+ EXPIREAT per new hash): each redis.call costs ~3 us of Redis CPU
-- whatever the command (docs/performance.md, "The window tier's Redis CPU").
local CFG = __RULES__

local call, sha1hex = redis.call, redis.sha1hex
local sub, byte, char, find = string.sub, string.byte, string.char, string.find
local sort, encode = table.sort, cjson.encode
local tonumber, tostring, unpack, ipairs, pairs, type, pcall = tonumber, tostring, unpack, ipairs, pairs, type, pcall

local ns, ttl, slice_s, slices = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local SEP = '\31'
__KEYS__
local MSG_AT = #K_DEDUP + 1  -- a dedup key is K_DEDUP .. message_id

-- Window tier (streams/identity/dedup_window.py): dw:<slice>:<shard> hashes, field = digest of the
-- message id, value = the first claim without its topic. Redis's clock, read once per call, and
-- with it the key prefix of each slice read (DWK[0] the current one, DWK[j] j slices before):
-- turning a slice number into a string costs more than the HGET of a missing key.
local cur_slice, DWK = nil, {}
local function window_slices()
  cur_slice = math.floor(tonumber(call('TIME')[1]) / slice_s)
  for j = 0, slices do DWK[j] = K_DW .. (cur_slice - j) .. ':' end
end
-- The first claim's tag of a digest, or false after writing ours into the current slice. An id
-- lives in at most one slice (it is written only where no slice read has it), so the order of
-- the reads changes no answer: the older slices first, then one HSETNX on the current one (a
-- write when new, a single scan of that hash either way) and an HGET only if it was there.
local function window_check(shard, field, tag)
  if not cur_slice then window_slices() end
  for j = 1, slices do
    local v = call('HGET', DWK[j] .. shard, field)
    if v then return v end
  end
  local k = DWK[0] .. shard
  if call('HSETNX', k, field, tag) == 0 then return call('HGET', k, field) end
  if call('HLEN', k) == 1 then call('EXPIREAT', k, (cur_slice + slices + 1) * slice_s) end
  return false
end
local function claim_tag(claim)
  local x = find(claim, '/', 1, true)
  if x then return sub(claim, x + 1) end
  return claim
end

local limit, default_limit, unique, nomerge = CFG.limit, CFG.default_limit, CFG.unique, CFG.nomerge
local unique_list, supernode = CFG.unique_list, CFG.supernode
local max_links, links_by_type, per_event = CFG.max_links, CFG.links_by_type, CFG.per_event

-- Scratch tables reused by every event of the call; every read is bounded by the current
-- event's own counts, so leftovers of an earlier event are never seen.
local T, V, F, P = {}, {}, {}, {}  -- candidate i: type, value, "type:value", owner (string|false)
local W1, W2 = {}, {}              -- arguments of variadic commands
local DIG = {}

-- cmd [key] items[1..n], at most 1000 items per call (unpack has a small stack limit; an even
-- step keeps field/value and key/value pairs together).
local function callv(cmd, key, items, n)
  local i = 1
  while i <= n do
    local j = i + 999
    if j > n then j = n end
    if key then call(cmd, key, unpack(items, i, j)) else call(cmd, unpack(items, i, j)) end
    i = j + 1
  end
end

-- HSET key f1 v1 ... of pairs[1..2n], as few calls as give the same hash as one HSET per pair:
-- an HSET turns a small (listpack) hash into a hashtable before writing anything when one of its
-- arguments is longer than hash-max-listpack-value, so a pair joins the current call only when it
-- is no longer than that call's first pair (whatever the setting, the call converts exactly when
-- the first pair alone would). Iteration order of a hashtable depends on when it was converted.
local function hset_pairs(key, pairs_, n)
  local i = 1
  while i <= n do
    local f, v = pairs_[i + i - 1], pairs_[i + i]
    local lim = #f
    if #v > lim then lim = #v end
    local j = i
    while j < n and j - i < 499 do
      local f2, v2 = pairs_[j + j + 1], pairs_[j + j + 2]
      if #f2 > lim or #v2 > lim then break end
      j = j + 1
    end
    if j == i then call('HSET', key, f, v) else call('HSET', key, unpack(pairs_, i + i - 1, j + j)) end
    i = j + 1
  end
end

-- MGET of keys[1..n] (chunked), as one reply table.
local function mget(keys, n)
  if n <= 1000 then return call('MGET', unpack(keys, 1, n)) end
  local out = {}
  for i = 1, n, 1000 do
    local j = i + 999
    if j > n then j = n end
    local part = call('MGET', unpack(keys, i, j))
    for x = 1, #part do out[#out + 1] = part[x] end
  end
  return out
end

local function seq_of(pid) return tonumber(sub(pid, 2), 36) end

-- "p" .. base36(x), digits 0-9a-z
local function pid_of(x)
  local k = 0
  repeat
    local r = x % 36
    k = k + 1
    if r < 10 then DIG[k] = 48 + r else DIG[k] = 87 + r end
    x = (x - r) / 36
  until x == 0
  for i = 1, k / 2 do DIG[i], DIG[k + 1 - i] = DIG[k + 1 - i], DIG[i] end
  return char(112, unpack(DIG, 1, k))
end

-- Profile meta (pm:<pid>), read once per event: counts per type, unique values, the counted
-- types sorted, and the hash as read (for folding a loser into the survivor).
local meta_cache
local function meta(pid, flat)
  local m = meta_cache[pid]
  if m then return m end
  flat = flat or call('HGETALL', K_PM .. pid)
  local counts, uniq, tags, types, nt = {}, {}, {}, {}, 0
  for i = 1, #flat, 2 do
    local k = flat[i]
    local b1, b2 = byte(k, 1, 2)
    if b1 == 110 and b2 == 58 then  -- 'n:'
      local t, cv = sub(k, 3), tonumber(flat[i + 1])
      if cv ~= nil and counts[t] == nil then nt = nt + 1 types[nt] = t end
      counts[t] = cv
    elseif b1 == 115 and b2 == 58 then tags[sub(k, 3)] = flat[i + 1]  -- 's:' split tag (split.lua)
    else uniq[sub(k, 3)] = flat[i + 1] end
  end
  if nt > 1 then sort(types) end
  m = {counts = counts, uniq = uniq, tags = tags, types = types, flat = flat}
  meta_cache[pid] = m
  return m
end

-- One planning pass in priority order over candidate indices: the stronger identifier wins
-- every conflict. C = identifiers per type the planned profile will hold.
local function plan(list, nlist)
  local group, order, U, C, TG = {}, {}, {}, {}, {}  -- TG: split tags of the planned profile
  local attach, mapped, audits = {}, {}, {}
  local no, na, nm = 0, 0, 0
  for x = 1, nlist do
    local c = list[x]
    local t, pid = T[c], P[c]
    if pid then
      if group[pid] then
        nm = nm + 1 mapped[nm] = c
      elseif no > 0 and nomerge[t] then
        audits[#audits + 1] = {type = 'conflict', rule = 'no_merge:' .. t, identifiers = {F[c]}, from_profile_id = pid}
      else
        local m = meta(pid)
        local uniq, bad = m.uniq, nil
        for _, ut in ipairs(unique_list) do
          local uv = uniq[ut]
          if uv and U[ut] and U[ut] ~= uv then bad = ut break end
        end
        local parted = false
        if not bad then
          for k, side in pairs(m.tags) do
            if TG[k] and TG[k] ~= side then parted = true break end
          end
        end
        if bad then
          audits[#audits + 1] = {type = 'conflict', rule = 'unique:' .. bad, identifiers = {F[c]}, from_profile_id = pid}
        elseif parted then
          audits[#audits + 1] = {type = 'conflict', rule = 'split', identifiers = {F[c]}, from_profile_id = pid}
        else
          local counts, over = m.counts, nil
          for _, lt in ipairs(m.types) do
            if (C[lt] or 0) + counts[lt] > (limit[lt] or default_limit) then over = lt break end
          end
          if over then
            audits[#audits + 1] = {type = 'blocked', rule = 'limit:' .. over, identifiers = {F[c]}, from_profile_id = pid}
          else
            group[pid] = F[c]
            no = no + 1 order[no] = pid
            nm = nm + 1 mapped[nm] = c
            for ut, uv in pairs(uniq) do U[ut] = uv end
            for k, side in pairs(m.tags) do TG[k] = side end
            for lt, k in pairs(counts) do C[lt] = (C[lt] or 0) + k end
          end
        end
      end
    else
      local v = V[c]
      if unique[t] and U[t] and U[t] ~= v then
        audits[#audits + 1] = {type = 'conflict', rule = 'unique:' .. t, identifiers = {F[c]}}
      elseif (C[t] or 0) + 1 > (limit[t] or default_limit) then
        audits[#audits + 1] = {type = 'blocked', rule = 'limit:' .. t, identifiers = {F[c]}}
      else
        C[t] = (C[t] or 0) + 1
        if unique[t] then U[t] = v end
        na = na + 1 attach[na] = c
      end
    end
  end
  return group, order, attach, mapped, audits, C
end

-- Link breaker: per bridge (a mapped identifier that is not unique or no-merge), the identifiers
-- of each other type this event brings into its profile while that profile already holds one of
-- the type: merged in from other profiles, linked, or refused by a limit or by uniqueness.
-- Returns a list of {f = "type:value", types = {sorted}, n = {type = count}}, or nil.
local function gathered_of(order, attach, audits, mapped)
  if max_links < 0 or #order == 0 then return nil end
  local total = {}
  for _, pid in ipairs(order) do
    local m = meta(pid)
    for _, t in ipairs(m.types) do total[t] = (total[t] or 0) + m.counts[t] end
  end
  for _, c in ipairs(attach) do total[T[c]] = (total[T[c]] or 0) + 1 end
  for _, x in ipairs(audits) do
    local r = x.rule
    local t = nil
    if sub(r, 1, 6) == 'limit:' then t = sub(r, 7) elseif sub(r, 1, 7) == 'unique:' then t = sub(r, 8) end
    if t then
      total[t] = (total[t] or 0) + 1
      -- a profile refused by another type's rule (an order-id limit, say) still brings in the
      -- refused identifier's own type: counted too, so the refusal is blamed whatever the rule
      local f = x.identifiers[1]
      local tf = sub(f, 1, find(f, ':', 1, true) - 1)
      if x.from_profile_id and tf ~= t then total[tf] = (total[tf] or 0) + 1 end
    end
  end
  local out = nil
  for _, c in ipairs(mapped) do
    local tc = T[c]
    if not (unique[tc] or nomerge[tc]) then
      local own = meta(P[c]).counts
      local types, n = {}, {}
      for t, k in pairs(total) do
        local o = own[t] or 0
        if t ~= tc and o > 0 and k > o and not per_event[t] then
          types[#types + 1] = t
          n[t] = k - o
        end
      end
      if #types > 0 then
        sort(types)
        out = out or {}
        out[#out + 1] = {f = F[c], types = types, n = n}
      end
    end
  end
  return out
end

-- The breakers' verdict on one plan: identifiers that would bridge more than `supernode`
-- merges, or gather more identifiers of a type than the link breaker allows (invariant 4).
local function breaker_hits(order, mapped, g)
  local hit, any = {}, false
  if supernode >= 0 and #order >= 2 then
    local k = #order - 1
    local nk = 0
    for _, c in ipairs(mapped) do
      if not (unique[T[c]] or nomerge[T[c]]) then
        nk = nk + 1 W1[nk] = K_DEG .. F[c] W2[nk] = c
      end
    end
    if nk > 0 then
      local degs = mget(W1, nk)
      for j = 1, nk do
        if tonumber(degs[j] or '0') + k > supernode then hit[F[W2[j]]] = true any = true end
      end
    end
  end
  if g then
    for _, b in ipairs(g) do
      if not hit[b.f] then
        local flat = call('HGETALL', K_LNK .. b.f)
        local cur = {}
        for i = 1, #flat, 2 do cur[flat[i]] = tonumber(flat[i + 1]) end
        for _, t in ipairs(b.types) do
          if (cur[t] or 0) + b.n[t] > (links_by_type[t] or max_links) then hit[b.f] = true any = true break end
        end
      end
    end
  end
  return hit, any
end

-- Quarantine the hit identifiers (SET quar:, one record each); the candidates left.
local function quarantine(live, nlive, hit, msg, quarantined)
  local rest, nrest = {}, 0
  for x = 1, nlive do
    local c = live[x]
    if hit[F[c]] then
      call('SET', K_QUAR .. F[c], msg)
      quarantined[#quarantined + 1] = {type = 'quarantined', rule = 'supernode', identifiers = {F[c]}, from_profile_id = P[c]}
    else
      nrest = nrest + 1 rest[nrest] = c
    end
  end
  return rest, nrest
end

-- The surviving profile: the oldest of the group (smallest sequence), or a new one.
local function survivor(order)
  local norder = #order
  if norder == 0 then return pid_of(call('INCR', K_SEQ)), true end
  local S, sS = order[1], seq_of(order[1])
  for i = 2, norder do
    local s = seq_of(order[i])
    if s < sS then S, sS = order[i], s end
  end
  return S, false
end

-- Merge: the older profile (smaller sequence) survives; losers are folded into S, oldest first.
local function fold_losers(S, order)
  local norder, pS, pmS = #order, K_P .. S, K_PM .. S
  local losers, nl = {}, 0
  if norder > 1 then
    for _, pid in ipairs(order) do
      if pid ~= S then nl = nl + 1 losers[nl] = pid end
    end
    if nl > 1 then sort(losers, function(x, y) return seq_of(x) < seq_of(y) end) end
  end
  local peS, plS = K_PE .. S, K_PL .. S
  for _, L in ipairs(losers) do
    local pL = K_P .. L
    local flat = call('HGETALL', pL)
    local nw = 0
    for i = 1, #flat, 2 do
      W1[nw + 1], W1[nw + 2] = K_ID .. flat[i], S
      nw = nw + 2
    end
    callv('MSET', nil, W1, nw)
    callv('HSET', pS, flat, #flat)
    local mflat = meta(L).flat  -- pm:L as plan read it (only pm:S is written in between)
    for i = 1, #mflat, 2 do
      local k = mflat[i]
      local b1, b2 = byte(k, 1, 2)
      if b1 == 110 and b2 == 58 then call('HINCRBY', pmS, k, mflat[i + 1])
      else call('HSET', pmS, k, mflat[i + 1]) end
    end
    local edges = call('LRANGE', K_PE .. L, 0, -1)
    callv('RPUSH', peS, edges, #edges)
    local fwd = call('SMEMBERS', K_PL .. L)
    fwd[#fwd + 1] = L
    nw = 0
    for _, x in ipairs(fwd) do
      W1[nw + 1], W1[nw + 2] = K_FWD .. x, S
      nw = nw + 2
    end
    callv('MSET', nil, W1, nw)
    callv('SADD', plS, fwd, #fwd)
    call('DEL', pL, K_PM .. L, K_PE .. L, K_PL .. L)
  end
  return losers
end

-- Bridges: the anchor (strongest accepted, already mapped identifier) joins every other profile
-- of the group; recorded once per merge as provenance for why(), with its audit record.
local function record_merges(S, order, group, mapped, losers, anchor_f, anchor_pid, msg, ts, changes)
  local norder, peS = #order, K_PE .. S
  local merged = {}
  if norder >= 2 then
    local nw = 0
    for _, pid in ipairs(order) do
      if pid ~= anchor_pid then
        nw = nw + 1
        W1[nw] = anchor_f .. SEP .. group[pid] .. SEP .. msg .. SEP .. 'co_occurrence' .. SEP .. ts
      end
    end
    callv('RPUSH', peS, W1, nw)
    -- bridged: the identifiers whose breaker count (deg) this event raises by 1 per merged record,
    -- so `touchpoint identity rebuild` can restore deg:* from the audit trail alone.
    local bridged = {}
    if supernode >= 0 then
      for _, c in ipairs(mapped) do
        if not (unique[T[c]] or nomerge[T[c]]) then bridged[#bridged + 1] = F[c] end
      end
    end
    for _, L in ipairs(losers) do
      local pair
      if L == anchor_pid then pair = {group[S], anchor_f} else pair = {anchor_f, group[L]} end
      local rec = {type = 'merged', rule = 'co_occurrence', identifiers = pair, from_profile_id = L}
      if #bridged > 0 then rec.bridged = bridged end
      changes[#changes + 1] = rec
      merged[#merged + 1] = L
    end
    if supernode >= 0 then
      for _, c in ipairs(mapped) do
        if not (unique[T[c]] or nomerge[T[c]]) then
          call('INCRBY', K_DEG .. F[c], norder - 1)
        end
      end
    end
  end
  return merged
end

-- Link breaker: each bridge (a mapped identifier that is not unique or no-merge) is credited
-- with what this event gathers of the types other than its own; returns the record of it (or nil).
local function credit_gathered(g)
  local grec = nil
  if g then
    grec = {}
    for _, b in ipairs(g) do
      local per = {}
      for _, t in ipairs(b.types) do
        call('HINCRBY', K_LNK .. b.f, t, b.n[t])
        per[t] = b.n[t]
      end
      grec[b.f] = per
    end
  end
  return grec
end

-- Attach the new identifiers to S, each linked to the anchor with this event as provenance.
local function attach_new(S, attach, anchor, anchor_f, msg, ts, created, changes)
  local nattach, pS, pmS = #attach, K_P .. S, K_PM .. S
  if nattach > 0 then
    local fs = {}
    local via = nil
    for i, c in ipairs(attach) do
      local f, t = F[c], T[c]
      W1[i + i - 1], W1[i + i] = K_ID .. f, S
      W2[i + i - 1] = f
      if c == anchor then
        W2[i + i] = SEP .. msg .. SEP .. 'first_seen' .. SEP .. ts
      else
        via = via or (anchor_f .. SEP .. msg .. SEP .. 'co_occurrence' .. SEP .. ts)
        W2[i + i] = via
      end
      fs[i] = f
    end
    callv('MSET', nil, W1, nattach + nattach)
    hset_pairs(pS, W2, nattach)
    -- pm:S: one HINCRBY per identifier, as many operations on the hash as one call per event
    -- would make (the iteration order of a hashtable-encoded hash depends on them).
    for _, c in ipairs(attach) do
      local t = T[c]
      call('HINCRBY', pmS, 'n:' .. t, '1')
      if unique[t] then call('HSET', pmS, 'u:' .. t, V[c]) end
    end
    if created then
      changes[#changes + 1] = {type = 'created', rule = 'first_seen', identifiers = fs}
    else
      -- via: the anchor the new identifiers are linked to (provenance; needed by identity rebuild)
      changes[#changes + 1] = {type = 'linked', rule = 'co_occurrence', identifiers = fs, via = anchor_f}
    end
  end
end

-- One read for one event: the dedup entry, then suppression, quarantine and owner of every
-- candidate (all plain strings, so "MGET gives a value" = "EXISTS"); fills T, V, F.
local function read_event(dkey, a, n)
  local n2 = n + n
  W1[1] = dkey
  for i = 1, n do
    local t, v = ARGV[a], ARGV[a + 1]
    a = a + 2
    local f = t .. ':' .. v
    T[i], V[i], F[i] = t, v, f
    W1[1 + i], W1[1 + n + i], W1[1 + n2 + i] = K_SUPP .. sha1hex(f), K_QUAR .. f, K_ID .. f
  end
  return mget(W1, 1 + n2 + n)
end

-- Candidates not quarantined, with their current owner (P); the owner of the first and whether
-- they all share it.
local function live_candidates(got, n)
  local n2 = n + n
  local live, nlive = {}, 0
  local pid0, same = false, true
  for i = 1, n do
    if not got[1 + n + i] then
      local pid = got[1 + n2 + i]
      P[i] = pid
      nlive = nlive + 1 live[nlive] = i
      if nlive == 1 then pid0 = pid elseif pid ~= pid0 then same = false end
    end
  end
  return live, nlive, pid0, same
end

-- Whether a profile (its pm hash as read) holds more of a type than the type's limit.
local function over_a_limit(flat)
  for i = 1, #flat, 2 do
    local k = flat[i]
    local b1, b2 = byte(k, 1, 2)
    if b1 == 110 and b2 == 58 then  -- 'n:'
      local cv = tonumber(flat[i + 1])
      if cv and cv > (limit[sub(k, 3)] or default_limit) then return true end
    end
  end
  return false
end

-- One event. a = index in ARGV of its first identifier type, n = number of identifiers.
local function resolve(dkey, claim, ts, shard, field, a, n)
  local got = read_event(dkey, a, n)

  -- Dedup: another claim on this message id = duplicate (invariant 2); our own claim =
  -- redelivery after a crash before the offset commit: replay the stored reply, or re-run.
  -- The value is the claim, followed (SEP outcome SEP profile) for a trivial resolution, whose
  -- reply is not stored in dres: a redelivery reports the profile first reported, not the
  -- current survivor (else an event already folded into a since-merged profile would be folded
  -- again into the survivor before the merged state arrives there).
  -- A new message id is claimed (SET EX) before anything else is written, except on the fast
  -- path below, which writes its final value at once instead of claim first, then value.
  local prev = got[1]
  local prev_claim, prev_outcome, prev_pid = prev, nil, nil
  if prev then
    local x = find(prev, SEP, 1, true)
    if x then
      local y = find(prev, SEP, x + 1, true)
      prev_claim, prev_outcome, prev_pid = sub(prev, 1, x - 1), sub(prev, x + 1, y - 1), sub(prev, y + 1)
    end
    if prev_claim ~= claim then
      return {'duplicate'}
    end
  else
    -- Not in the replay tier: the window tier knows whether the id was seen (another claim =
    -- duplicate; ours = a redelivery later than the replay tier's TTL: resolved again).
    local tag = claim_tag(claim)
    local seen = window_check(shard, field, tag)
    if seen and seen ~= tag then return {'duplicate'} end
  end

  -- Erased people stay erased (invariant 5): any suppressed identifier drops the whole event,
  -- unless it was readmitted ('r' .. erasure ms, written by ingest for an event with fresh
  -- consent, docs/identity.md "the way back") and this event is later than the erasure.
  for i = 2, n + 1 do
    local s = got[i]
    if s and not (byte(s, 1) == 114 and tonumber(ts) > tonumber(sub(s, 2))) then
      if not prev then call('SET', dkey, claim, 'EX', ttl) end
      return {'erased', false, false}
    end
  end

  -- identifiers quarantined before this event: ignored, reported so the event is folded without them
  local skip = false
  for i = 1, n do
    if got[1 + n + i] then skip = skip and (skip .. SEP .. F[i]) or F[i] end
  end
  local msg = nil  -- the message id, cut from dkey when needed (not on the fast path)
  if prev then
    msg = sub(dkey, MSG_AT)
    local stored = call('GET', K_DRES .. msg)
    if stored then return {'=', stored, skip} end
    if prev_pid then return {prev_outcome, prev_pid, false, skip} end
  end

  local live, nlive, pid0, same = live_candidates(got, n)

  -- Fast path, most events of a known person: every candidate left already belongs to one
  -- profile. The plan below would accept them all (nothing to merge, attach or refuse) unless
  -- that profile holds more of a type than the type's limit (possible after a rule change), and
  -- reply trivially; check just that, on the same read of the profile meta the plan makes.
  local flat0 = nil
  if pid0 and same then
    flat0 = call('HGETALL', K_PM .. pid0)
    if not over_a_limit(flat0) then
      if prev then call('SET', dkey, claim .. SEP .. 'applied' .. SEP .. pid0, 'XX', 'KEEPTTL')
      else call('SET', dkey, claim .. SEP .. 'applied' .. SEP .. pid0, 'EX', ttl) end
      return {'applied', pid0, false, skip}
    end
  end
  if not prev then call('SET', dkey, claim, 'EX', ttl) end
  msg = msg or sub(dkey, MSG_AT)

  -- Supernode breaker: an identifier that would bridge more than N merges is quarantined and
  -- the event is planned again without it (invariant 4).
  meta_cache = {}
  if flat0 then meta(pid0, flat0) end
  local quarantined = {}
  local group, order, attach, mapped, audits, C, g
  while true do
    group, order, attach, mapped, audits, C = plan(live, nlive)
    g = gathered_of(order, attach, audits, mapped)
    local hit, any = breaker_hits(order, mapped, g)
    if not any then break end
    live, nlive = quarantine(live, nlive, hit, msg, quarantined)
  end

  local changes = quarantined
  for _, x in ipairs(audits) do changes[#changes + 1] = x end

  local function reply(outcome, pid, merged)
    if #changes == 0 and #merged == 0 then
      if pid then call('SET', dkey, claim .. SEP .. outcome .. SEP .. pid, 'XX', 'KEEPTTL') end
      return {outcome, pid or false, false, skip}
    end
    local body = encode({m = merged, c = changes})
    call('SET', K_DRES .. msg, outcome .. SEP .. (pid or '') .. SEP .. body, 'EX', ttl)
    return {outcome, pid or false, body, skip}
  end

  local norder, nattach = #order, #attach
  if norder == 0 and nattach == 0 then
    return reply('blocked', nil, {})
  end

  local S, created = survivor(order)
  local anchor = mapped[1] or attach[1]
  local anchor_f, anchor_pid = F[anchor], P[anchor]
  local losers = fold_losers(S, order)
  local merged = record_merges(S, order, group, mapped, losers, anchor_f, anchor_pid, msg, ts, changes)
  local grec = credit_gathered(g)
  attach_new(S, attach, anchor, anchor_f, msg, ts, created, changes)
  -- on the event's last record: `identity rebuild` restores lnk:* from it
  if grec then changes[#changes].gathered = grec end

  return reply('applied', S, merged)
end

local out = {}
local a = 5
for e = 1, #KEYS do
  local n = tonumber(ARGV[a + 2])
  local ok, r = pcall(resolve, KEYS[e], ARGV[a], ARGV[a + 1], ARGV[a + 3], ARGV[a + 4], a + 5, n)
  if not ok then
    if type(r) == 'table' and r.err then r = {err = r.err} else r = {err = 'ERR ' .. tostring(r)} end
  end
  out[e] = r
  a = a + 5 + n + n
end
return out
