#!/usr/bin/env bash
# `make demo`: local kube-apiserver + SecantusDB (MongoDB wire) + Redis, the CRDs, examples/,
# and the operator; then what it did, in Kubernetes and in MongoDB.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ENV_DIR="${LCO_ENV_DIR:-/tmp/librechat-operator-env}"
export LCO_ENV_DIR="$ENV_DIR"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "installing what is missing (cached under ~/.cache)"
bash tests/env/install.sh
cargo build --quiet

say "starting local servers"
bash tests/env/up.sh
# shellcheck disable=SC1091
. "$ENV_DIR/env"
# LibreChat's database is named in the URI path, as in LibreChat's MONGO_URI.
MONGO_URI_LIBRECHAT="$(python3 - "$MONGODB_URI" <<'PY'
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1]); print(u.urlunsplit((p.scheme, p.netloc, "/LibreChat", p.query, "")))
PY
)"

say "installing the CRDs (crds/)"
kubectl apply -f crds/ >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd/librechatinstances.librechat.ai crd/librechatusers.librechat.ai crd/userbans.librechat.ai crd/userinvites.librechat.ai crd/librechatgroups.librechat.ai crd/librechatroles.librechat.ai >/dev/null
kubectl create namespace librechat --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n librechat create secret generic librechat-stores \
  --from-literal=mongo-uri="$MONGO_URI_LIBRECHAT" --from-literal=redis-uri="$REDIS_URL" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null

# Alice's password is a Secret made out of band (examples/ commits no password), as its
# comment in examples/20-users.yaml says; kept if it exists, so re-runs do not rotate it.
if ! kubectl -n librechat get secret alice-password >/dev/null 2>&1; then
  kubectl -n librechat create secret generic alice-password \
    --from-literal=password="$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')" >/dev/null
fi

# The agent examples/50-access.yaml shares with the research team, as someone made it in
# LibreChat's UI (its author and owner entry included).
"$HOME/.cache/secantus-venv/bin/python" - "$MONGO_URI_LIBRECHAT" <<'PY'
import sys, datetime, pymongo
from bson import ObjectId
db = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=5000).get_default_database()
agent, author, now = ObjectId("6b1100000000000000000a01"), ObjectId("6b1100000000000000000a02"), datetime.datetime.now(datetime.timezone.utc)
db.agents.update_one({"_id": agent}, {"$setOnInsert": {"id": "agent_research_assistant", "name": "Research assistant",
    "provider": "openAI", "model": "gpt-4o", "author": author, "tools": [], "createdAt": now, "updatedAt": now, "__v": 0}}, upsert=True)
db.aclentries.update_one({"principalType": "user", "principalId": author, "resourceType": "agent", "resourceId": agent},
    {"$setOnInsert": {"principalModel": "User", "permBits": 15, "grantedAt": now, "grantedBy": author}}, upsert=True)
PY

say "applying examples/ (the Secrets of URIs and of alice's password were made above)"
for f in examples/*.yaml; do
  [ "$(basename "$f")" = secret-stores.yaml ] && continue
  kubectl apply -f "$f"
done

say "running the operator"
mkdir -p .demo
HTTP_ADDR="${DEMO_HTTP_ADDR:-127.0.0.1:8080}"
./target/debug/librechat-operator run --http-addr "$HTTP_ADDR" > .demo/operator.log 2>&1 &
OPERATOR=$!
trap 'kill $OPERATOR 2>/dev/null || true' EXIT
kubectl -n librechat wait --for=condition=Ready librechatinstance/librechat --timeout=60s >/dev/null
kubectl -n librechat wait --for=condition=Ready librechatuser --all --timeout=60s >/dev/null || true
kubectl -n librechat wait --for=condition=Ready userban,userinvite,librechatgroup,librechatrole --all --timeout=60s >/dev/null || true

say "kubectl get librechat -n librechat"
kubectl get librechat -n librechat -o wide

say "accounts in MongoDB ($MONGO_URI_LIBRECHAT, collection users)"
"$HOME/.cache/secantus-venv/bin/python" - "$MONGO_URI_LIBRECHAT" <<'PY'
import sys, pymongo
db = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=5000).get_default_database()
print(f"{'email':24} {'role':8} {'provider':8} {'verified':8} password")
for u in db.users.find({}, {"email": 1, "role": 1, "provider": 1, "emailVerified": 1, "password": 1}).sort("email"):
    pw = "bcrypt cost " + u["password"].split("$")[2] if u.get("password") else "(none: SSO)"
    print(f"{u['email']:24} {u.get('role',''):8} {u.get('provider',''):8} {str(u.get('emailVerified')):8} {pw}")
PY

say "groups, custom roles and grants in MongoDB (what LibreChat's getUserPrincipals and ACL read)"
"$HOME/.cache/secantus-venv/bin/python" - "$MONGO_URI_LIBRECHAT" <<'PY'
import sys, pymongo
db = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=5000).get_default_database()
emails = {str(u["_id"]): u["email"] for u in db.users.find({}, {"email": 1})}
for g in db.groups.find({"source": "local"}):
    print(f"group {g['name']}: {', '.join(emails.get(m, m) for m in g.get('memberIds', []))}")
for r in db.roles.find({"name": {"$nin": ["USER", "ADMIN"]}}):
    on = [f"{t}.{k}" for t, keys in sorted(r.get("permissions", {}).items()) for k, v in sorted(keys.items()) if v]
    print(f"role {r['name']}: {' '.join(on)}")
names = {str(g["_id"]): g["name"] for g in db.groups.find({}, {"name": 1})}
bundles = {1: "viewer", 3: "editor", 7: "manager", 15: "owner"}
for a in db.aclentries.find({"principalType": {"$in": ["group", "role"]}}):
    who = names.get(str(a["principalId"]), a["principalId"])
    print(f"grant {a['principalType']} {who}: {bundles.get(a['permBits'], a['permBits'])} on {a['resourceType']} {a['resourceId']}")
PY

say "the invitation link (Secret dana-invite, key url)"
kubectl -n librechat get secret dana-invite -o jsonpath='{.data.url}' | base64 -d; echo

say "bans in MongoDB (collection logs, as LibreChat's checkBan reads them)"
"$HOME/.cache/secantus-venv/bin/python" - "$MONGO_URI_LIBRECHAT" <<'PY'
import sys, json, datetime, pymongo
db = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=5000).get_default_database()
for b in db.logs.find({"key": {"$regex": "^BANS:"}}):
    v = json.loads(b["value"])["value"]
    end = datetime.datetime.fromtimestamp(v["expiresAt"] / 1000, datetime.timezone.utc).isoformat() if "expiresAt" in v else "never"
    print(f"{b['key']:36} ends {end}")
PY

# The instance recounts its stats at most once a minute; its first count came before the
# users above existed. Wait for the count that includes them, so the summary is current.
users=$(kubectl -n librechat get librechatuser -o name | wc -l)
echo "(waiting for the instance's next count of the $users managed users: at most a minute)"
for _ in $(seq 1 75); do
  managed=$(kubectl -n librechat get librechatinstance librechat -o jsonpath='{.status.stats.managedUsers}' 2>/dev/null || true)
  [ "${managed:-0}" -ge "$users" ] && break
  sleep 1
done

say "kubectl librechat status -n librechat (the same binary as a kubectl plugin; make plugin installs it)"
./target/debug/librechat-operator kubectl status -n librechat || true

say "where to look next"
cat <<TXT
  export KUBECONFIG=$KUBECONFIG
  kubectl get librechat -n librechat                      # every kind at once
  kubectl describe librechatuser alice -n librechat       # conditions and events
  ./target/debug/librechat-operator kubectl whois alice@example.com -n librechat
  kubectl get secret bob-login -n librechat -o jsonpath='{.data.password}' | base64 -d
  MongoDB: $MONGO_URI_LIBRECHAT    Redis: $REDIS_URL
  Metrics: curl http://$HTTP_ADDR/metrics      Operator log: .demo/operator.log
  Stop the servers: make env-down
TXT

if [ -t 0 ] && [ -z "${CI:-}" ]; then
  say "the operator keeps running: edit examples/ and re-apply them; Ctrl-C stops it"
  wait "$OPERATOR"
fi
