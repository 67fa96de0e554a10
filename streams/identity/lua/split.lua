-- Touchpoint identity graph: split one profile in two (streams/identity/split.py is the reference
-- plan; streams/identity/memory_graph.py the twin). ARGV = ns ("<namespace>:"), mode ("cut" |
-- "detach"), a, b ("" for detach), ts_ms.
-- Reply = {"ok", kept pid, new pid, {moved "type:value", sorted}, kept count} | {"refused", why}.
local ns, mode, a, b, ts = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
__KEYS__
local SEP = '\31'
local call = redis.call
local sub, find, sort = string.sub, string.find, table.sort

local function via_of(enc) return sub(enc, 1, find(enc, SEP, 1, true) - 1) end
local function uncut(enc) local x = find(enc, SEP, 1, true) return sub(enc, x) end
local function pid_of(x)
  local d, k = {}, 0
  repeat
    local r = x % 36
    k = k + 1
    if r < 10 then d[k] = string.char(48 + r) else d[k] = string.char(87 + r) end
    x = (x - r) / 36
  until x == 0
  local out = {}
  for i = k, 1, -1 do out[#out + 1] = d[i] end
  return 'p' .. table.concat(out)
end

local S = call('GET', K_ID .. a)
if not S then return {'refused', a .. ' is not in a profile'} end
local flat = call('HGETALL', K_P .. S)
local links, n = {}, 0
for i = 1, #flat, 2 do links[flat[i]] = flat[i + 1] n = n + 1 end
local edges = call('LRANGE', K_PE .. S, 0, -1)

-- the provenance tree: adjacency with edge ids
local adj = {}
local function add(x, y, id)
  adj[x] = adj[x] or {}
  local l = adj[x]
  l[#l + 1] = {y, id}
end
for f, enc in pairs(links) do
  local v = via_of(enc)
  if v ~= '' and links[v] then add(f, v, 'l:' .. f) add(v, f, 'l:' .. f) end
end
local ends = {}
for i, e in ipairs(edges) do
  local x1 = find(e, SEP, 1, true)
  local x2 = find(e, SEP, x1 + 1, true)
  local x, y = sub(e, 1, x1 - 1), sub(e, x1 + 1, x2 - 1)
  ends[i] = {x, y}
  add(x, y, 'e:' .. i) add(y, x, 'e:' .. i)
end

local N = pid_of(tonumber(call('GET', K_SEQ) or '0') + 1)
local moved, nmoved = {}, 0
local rejoins = {}
if mode == 'cut' then
  if not links[b] or a == b then return {'refused', a .. ' and ' .. b .. ' are not two identifiers of one profile'} end
  local gone, any = {}, false
  for _, ne in ipairs(adj[a] or {}) do
    if ne[1] == b then gone[ne[2]] = true any = true end
  end
  if not any then return {'refused', 'no recorded link between ' .. a .. ' and ' .. b .. ' (see touchpoint identity why)'} end
  moved[b] = true nmoved = 1
  local todo = {b}
  while #todo > 0 do
    local cur = table.remove(todo)
    for _, ne in ipairs(adj[cur] or {}) do
      if not gone[ne[2]] and not moved[ne[1]] then
        moved[ne[1]] = true nmoved = nmoved + 1
        todo[#todo + 1] = ne[1]
      end
    end
  end
  if moved[a] then return {'refused', a .. ' and ' .. b .. ' are also joined by other recorded links'} end
else
  moved[a] = true nmoved = 1
  local own = via_of(links[a])
  local seen, nb = {}, {}
  for _, ne in ipairs(adj[a] or {}) do
    if ne[1] ~= a and not seen[ne[1]] then seen[ne[1]] = true nb[#nb + 1] = ne[1] end
  end
  sort(nb)
  if #nb > 0 then
    local r = seen[own] and own or nb[1]
    for _, z in ipairs(nb) do
      if z ~= r then rejoins[#rejoins + 1] = r .. SEP .. z .. SEP .. N .. SEP .. 'split' .. SEP .. ts end
    end
  end
end
if nmoved >= n then return {'refused', 'nothing would stay: the profile holds only what would move'} end
call('INCR', K_SEQ)

-- links: moved ones to p:N (without via where the cut crosses), crossing kept ones rewritten
local pS, pN, pmS, pmN = K_P .. S, K_P .. N, K_PM .. S, K_PM .. N
local meta = call('HGETALL', pmS)
local m = {}
for i = 1, #meta, 2 do m[meta[i]] = meta[i + 1] end
local list = {}
for f, enc in pairs(links) do
  local v = via_of(enc)
  local crosses = v ~= '' and ((moved[f] and true or false) ~= (moved[v] and true or false))
  if moved[f] then
    list[#list + 1] = f
    call('HSET', pN, f, crosses and uncut(enc) or enc)
  elseif crosses then
    call('HSET', pS, f, uncut(enc))
  end
end
sort(list)
for _, f in ipairs(list) do
  local x = find(f, ':', 1, true)
  local t, v = sub(f, 1, x - 1), sub(f, x + 1)
  call('HDEL', pS, f)
  call('SET', K_ID .. f, N)
  if call('HINCRBY', pmS, 'n:' .. t, -1) == 0 then call('HDEL', pmS, 'n:' .. t) end
  call('HINCRBY', pmN, 'n:' .. t, 1)
  if m['u:' .. t] == v then call('HDEL', pmS, 'u:' .. t) call('HSET', pmN, 'u:' .. t, v) end
end
-- bridges: wholly on one side stay with it; the cut one goes; rejoins after the kept ones
local keep, go = {}, {}
for i, e in ipairs(edges) do
  local x, y = ends[i][1], ends[i][2]
  if moved[x] and moved[y] then go[#go + 1] = e elseif not moved[x] and not moved[y] then keep[#keep + 1] = e end
end
for _, e in ipairs(rejoins) do keep[#keep + 1] = e end
call('DEL', K_PE .. S)
if #keep > 0 then call('RPUSH', K_PE .. S, unpack(keep)) end
if #go > 0 then call('RPUSH', K_PE .. N, unpack(go)) end
-- split tags: the new profile inherits the old ones; the two sides refuse each other from now on
for k, v in pairs(m) do
  if sub(k, 1, 2) == 's:' then call('HSET', pmN, k, v) end
end
call('HSET', pmS, 's:' .. N, 'a')
call('HSET', pmN, 's:' .. N, 'b')
return {'ok', S, N, list, n - nmoved}
