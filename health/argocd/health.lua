-- Argo CD health check for every kind of group librechat.ai (LibreChatInstance,
-- LibreChatUser, UserBan, UserInvite, LibreChatGroup, LibreChatRole). Argo CD runs it with the object in the global `obj`
-- and only Lua's base, table and a safe os library loaded, so it uses nothing else.
--
-- The operator's contract (src/api/common.rs, src/controller/report.rs): status carries
-- observedGeneration and the conditions Ready, Stalled (a person must act) and Reconciling
-- (waiting for something transient). A new generation is first stamped Reconciling=True.
--   status.observedGeneration < metadata.generation  -> Progressing
--   Stalled=True                                     -> Degraded, with its message
--   Ready=True, Reconciling not True                 -> Healthy, with its message
--   otherwise (Reconciling=True, no conditions yet)  -> Progressing, with Ready's message
--   no status yet (the operator has not seen it)     -> Progressing
local hs = {}

local function find(conditions, type_)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function said(c, otherwise)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return otherwise
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report on this object"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local conditions = obj.status.conditions
local stalled = find(conditions, "Stalled")
local ready = find(conditions, "Ready")
local reconciling = find(conditions, "Reconciling")

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = said(stalled, said(ready, "Stalled"))
  return hs
end

-- A Ready=True left from the previous generation while the new one is applied (Reconciling
-- stamped for it) says nothing of the new generation yet.
local applying = reconciling ~= nil and reconciling.status == "True"
if ready ~= nil and ready.status == "True" and not applying then
  hs.status = "Healthy"
  hs.message = said(ready, "Ready")
  return hs
end

hs.status = "Progressing"
if ready ~= nil then
  hs.message = said(ready, "Waiting for Ready")
else
  hs.message = said(reconciling, "Waiting for Ready")
end
return hs
