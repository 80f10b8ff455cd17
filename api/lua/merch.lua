-- Merchandising helpers of the serve script (serve_*.lua; api.filters, api.explain): the
-- category rule of API.md and the facts an explain trace reports about a prepared list. Pure helpers: no
-- request state.

-- whether category `cat` is one of `list` or a sub-category of one (dot-separated:
-- 'electronics' matches 'electronics.audio', not 'electronicsx'); no category never does
local function cat_ok(cat, list)
  if type(cat) ~= 'string' or cat == '' then return false end
  for i = 1, #list do
    local c = list[i]
    if cat == c then return true end
    local lc = #c
    if #cat > lc and string.byte(cat, lc + 1) == 46 and string.sub(cat, 1, lc) == c then
      return true
    end
  end
  return false
end

-- entries, model version and write time (text) of a prepared JSON list, for the trace
local function json_meta(raw)
  if type(raw) ~= 'string' then return 0, false, false end
  local okd, doc = pcall(cjson.decode, raw)
  if not okd or type(doc) ~= 'table' then return 0, false, false end
  local items = doc
  if doc.items ~= nil then items = doc.items end
  local size = 0
  if type(items) == 'table' then size = #items end
  local v, ts = doc.v, finite(doc.ts)
  if type(v) ~= 'string' then v = false end
  if ts == nil then ts = false else ts = string.format('%.17g', ts) end
  return size, v, ts
end
