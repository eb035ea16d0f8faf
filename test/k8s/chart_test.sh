#!/usr/bin/env bash
# K8sHelmChart: deploy/helm/nodepath with the seed's `--set` flags, against a real kube-apiserver:
#  - it renders, and every object it renders passes the API server's own validation
#    (`kubectl apply --dry-run=server`), CRDs included;
#  - the seed's flags land in the ConfigMap as cilium-config's keys, and the agent accepts that
#    ConfigMap as its --config-dir (`nodepath-agent --check-config`);
#  - l2announcements.enabled and Cilium's Lease timing values (leaseDuration, leaseRenewDeadline,
#    leaseRetryPeriod) render into the agent's keys, which it accepts (and refuses a renew deadline
#    not below the duration, saying why); the agent's Role for Leases is in the release namespace,
#    which the agent learns from POD_NAMESPACE; it has NET_RAW for the ARP responder;
#  - values nodepath does not support, unknown keys and contradictions fail `helm template` with a
#    message naming them; hubble.ui without an image says so in NOTES;
#  - hubble.relay.enabled=true renders hubble-relay as Cilium's chart does: a Deployment (1 replica,
#    the relay image, its config from the ConfigMap hubble-relay-config: peer service hubble-peer:80,
#    listen :4245, plaintext), the Service hubble-relay 80 -> grpc (4245) selecting the relay pods
#    and only them, and hubble-peer 80 -> 4244 selecting the agents; the image's default tag is the
#    hubble-relay version scripts/image.sh builds; relay off renders none of it; relay without
#    hubble is refused;
#  - `helm install` creates the DaemonSet, operator, ConfigMap and RBAC in namespace cilium (the
#    agent's ServiceAccount may create/update Leases there, and not elsewhere),
#    `helm upgrade` with a changed value changes the ConfigMap and rolls the pod template, and
#    `helm uninstall` removes them (the CRDs stay, as Helm does for crds/).
#
# Lab: no agents; kube-apiserver + etcd in n1.
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init K8sHelmChart npk8s_chart
E2E_LAB_MADE=1
require "lab topology up" lab_up
require "kube-apiserver and etcd up in n1" k8s_up
HELM=$(np_go_tool helm)
CHART=$E2E_REPO/deploy/helm/nodepath
AGENT=$(lab__bin agent)
# the seed's install line (and its later l2announcements upgrade), verbatim
SEED=(--set operator.replicas=1 --set ipam.mode=cluster-pool --set ipam.operator.clusterPoolIPv4PodCIDRList=10.0.0.0/16
  --set routingMode=native --set autoDirectNodeRoutes=true --set ipv4NativeRoutingCIDR=10.0.0.0/16
  --set bpf.masquerade=true --set kubeProxyReplacement=true --set loadBalancer.mode=dsr
  --set loadBalancer.acceleration=native --set hubble.relay.enabled=true --set hubble.ui.enabled=true
  --set installNoConntrackIptablesRules=true --set l2announcements.enabled=true)
helm_() { lab_node_exec n1 env HOME="$E2E_TMP" "$HELM" --kubeconfig "$K8S_KUBECONFIG" "$@"; }
render() { helm_ template nodepath "$CHART" --namespace cilium --include-crds "$@" 2>/dev/null; }

expect_server_accepts() { # every rendered object passes the API server's validation
  local out
  render "${SEED[@]}" >"$E2E_TMP/seed.yaml" || { echo "helm template failed"; return 1; }
  out=$(k8s_kubectl apply --dry-run=server -f - <"$E2E_TMP/seed.yaml" 2>&1) || { echo "$out"; return 1; }
  grep -q 'daemonset.apps/nodepath created (server dry run)' <<<"$out" || { echo "$out"; return 1; }
  grep -q 'deployment.apps/nodepath-operator created (server dry run)' <<<"$out" || { echo "$out"; return 1; }
  grep -q 'deployment.apps/hubble-relay created (server dry run)' <<<"$out" || { echo "$out"; return 1; }
  grep -q 'service/hubble-relay created (server dry run)' <<<"$out" || { echo "$out"; return 1; }
}
check "the seed's flags render, and the API server accepts every object (apply --dry-run=server)" expect_server_accepts

configmap_dir() { # <dir> [rendered file]: the rendered ConfigMap's keys as files, as the kubelet mounts them
  python3 - "$1" "${2:-$E2E_TMP/seed.yaml}" <<'PY'
import os, sys, yaml
for doc in yaml.safe_load_all(open(sys.argv[2])):
    if doc and doc.get("kind") == "ConfigMap" and doc["metadata"]["name"] == "nodepath-config":
        for k, v in doc["data"].items():
            open(os.path.join(sys.argv[1], k), "w").write(v)
PY
}
expect_key() { # <key> <value>
  local got
  got=$(cat "$E2E_TMP/cm/$1" 2>/dev/null) || { echo "no key $1 in the ConfigMap"; return 1; }
  [[ $got == "$2" ]] || { echo "$1 is '$got', not '$2'"; return 1; }
}
require "the ConfigMap's keys as files" eval 'mkdir -p "$E2E_TMP/cm" && configmap_dir "$E2E_TMP/cm"'
check "bpf.masquerade=true -> enable-bpf-masquerade: true" expect_key enable-bpf-masquerade true
check "loadBalancer.mode=dsr -> bpf-lb-mode: dsr" expect_key bpf-lb-mode dsr
check "loadBalancer.acceleration=native -> bpf-lb-acceleration: native" expect_key bpf-lb-acceleration native
check "ipam.operator.clusterPoolIPv4PodCIDRList=10.0.0.0/16 -> cluster-pool-ipv4-cidr" expect_key cluster-pool-ipv4-cidr 10.0.0.0/16
check "ipv4NativeRoutingCIDR -> ipv4-native-routing-cidr" expect_key ipv4-native-routing-cidr 10.0.0.0/16
check "installNoConntrackIptablesRules=true -> install-no-conntrack-iptables-rules" expect_key install-no-conntrack-iptables-rules true
check "l2announcements.enabled=true -> enable-l2-announcements" expect_key enable-l2-announcements true
check "...with the default Lease timings (l2-announcements-lease-duration 2s)" expect_key l2-announcements-lease-duration 2s
check "...l2-announcements-renew-deadline 1.5s" expect_key l2-announcements-renew-deadline 1.5s
check "...l2-announcements-retry-period 500ms" expect_key l2-announcements-retry-period 500ms
check "the agent accepts the ConfigMap as its --config-dir" \
  eval '"$AGENT" --config-dir "$E2E_TMP/cm" --node-name n1 --check-config | grep -qx "configuration ok"'

expect_refused() { # <regex> <helm args...>: helm template fails saying regex
  local re=$1 out
  shift
  if out=$(helm_ template nodepath "$CHART" --namespace cilium "$@" 2>&1); then
    echo "helm template $* succeeded"
    return 1
  fi
  grep -Eq -- "$re" <<<"$out" || { echo "expected /$re/ in: $out"; return 1; }
}
check "routingMode=tunnel is refused, naming routingMode" expect_refused 'routingMode' --set routingMode=tunnel
check "an unknown key (tunnelProtocol) is refused, naming it" expect_refused 'tunnelProtocol' --set tunnelProtocol=vxlan
check "loadBalancer.mode=bogus is refused" expect_refused 'loadBalancer.mode' --set loadBalancer.mode=bogus
check "kubeProxyReplacement=false is refused (nodepath replaces kube-proxy)" expect_refused 'kubeProxyReplacement' \
  --set kubeProxyReplacement=false
check "bpf.masquerade without ipv4NativeRoutingCIDR is refused with the reason" \
  expect_refused 'bpf.masquerade=true needs ipv4NativeRoutingCIDR' --set bpf.masquerade=true
check "two pool CIDRs are refused (one IPv4 pool)" expect_refused 'exactly one IPv4 pool' \
  --set 'ipam.operator.clusterPoolIPv4PodCIDRList={10.0.0.0/16,10.1.0.0/16}'
check "a pool that is not a CIDR is refused" expect_refused 'clusterPoolIPv4PodCIDRList' \
  --set ipam.operator.clusterPoolIPv4PodCIDRList=10.0.0.0

# Cilium's chart's Lease timing values, set: they reach the agent's keys, and the agent takes them.
l2_timings() {
  local out
  render "${SEED[@]}" --set l2announcements.leaseDuration=15s --set l2announcements.leaseRenewDeadline=5s \
    --set l2announcements.leaseRetryPeriod=2s >"$E2E_TMP/l2.yaml" || { echo "helm template failed"; return 1; }
  rm -rf "$E2E_TMP/cm-l2" && mkdir -p "$E2E_TMP/cm-l2" || return 1
  configmap_dir "$E2E_TMP/cm-l2" "$E2E_TMP/l2.yaml" || return 1
  out=$(cd "$E2E_TMP/cm-l2" && grep -H . l2-announcements-lease-duration l2-announcements-renew-deadline l2-announcements-retry-period 2>&1 | tr '\n' ' ')
  [[ $out == "l2-announcements-lease-duration:15s l2-announcements-renew-deadline:5s l2-announcements-retry-period:2s " ]] ||
    { echo "the ConfigMap's Lease timing keys: $out"; return 1; }
  out=$("$AGENT" --config-dir "$E2E_TMP/cm-l2" --node-name n1 --check-config 2>&1) || { echo "$out"; return 1; }
  grep -qx "configuration ok" <<<"$out" || { echo "$out"; return 1; }
}
check "l2announcements.leaseDuration/leaseRenewDeadline/leaseRetryPeriod=15s/5s/2s reach the keys, and the agent accepts them" l2_timings
check "a Lease timing that is not a duration is refused, naming it" expect_refused 'leaseDuration' \
  --set l2announcements.leaseDuration=fifteen
bad_timings() { # a renew deadline not below the lease duration: the agent's --check-config says so
  local out
  render "${SEED[@]}" --set l2announcements.leaseRenewDeadline=2s >"$E2E_TMP/l2bad.yaml" || { echo "helm template failed"; return 1; }
  rm -rf "$E2E_TMP/cm-bad" && mkdir -p "$E2E_TMP/cm-bad" && configmap_dir "$E2E_TMP/cm-bad" "$E2E_TMP/l2bad.yaml" || return 1
  if out=$("$AGENT" --config-dir "$E2E_TMP/cm-bad" --node-name n1 --check-config 2>&1); then
    echo "--check-config accepted a renew deadline equal to the lease duration: $out"
    return 1
  fi
  grep -q "is not below --l2-announcements-lease-duration" <<<"$out" && return 0
  echo "expected the reason, saw: $out"
  return 1
}
check "a renew deadline not below the lease duration (2s/2s) is refused by the agent's --check-config, with the reason" bad_timings
# The agent's Leases live in its own namespace (POD_NAMESPACE): the Role follows the release's.
leases_role_in() { # <namespace>
  render "${SEED[@]}" --namespace "$1" | python3 -c '
import sys, yaml
ns = sys.argv[1]
docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
role = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "nodepath-agent-leases"]
bind = [d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"] == "nodepath-agent-leases"]
ok = len(role) == 1 and role[0]["metadata"]["namespace"] == ns and any(
    "coordination.k8s.io" in r.get("apiGroups", []) and "leases" in r.get("resources", [])
    and {"get", "list", "watch", "create", "update"} <= set(r.get("verbs", [])) for r in role[0]["rules"])
ok = ok and len(bind) == 1 and bind[0]["metadata"]["namespace"] == ns and bind[0]["subjects"][0]["namespace"] == ns
ds = [d for d in docs if d["kind"] == "DaemonSet"]
env = {e["name"]: e for e in ds[0]["spec"]["template"]["spec"]["containers"][0]["env"]} if ds else {}
ok = ok and env.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace"
# the ARP responder is an AF_PACKET socket
caps = ds[0]["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] if ds else []
ok = ok and "NET_RAW" in caps
if not ok:
    print("Role/RoleBinding nodepath-agent-leases, POD_NAMESPACE or NET_RAW not as expected:", role, bind, env.get("POD_NAMESPACE"), caps)
sys.exit(0 if ok else 1)
' "$1"
}
check "the agent's Role for Leases (get/list/watch/create/update) is in the release namespace (cilium); the agent has NET_RAW (ARP)" leases_role_in cilium
check "...and follows another release namespace (kube-system), with POD_NAMESPACE from the pod" leases_role_in kube-system
# A Degraded agent (a bad L2 policy, an unreachable API server) must not be restarted by kubelet:
# startup and liveness only ask whether it answers; readiness wants Ok.
probes() {
  render "${SEED[@]}" | python3 -c '
import sys, yaml
ds = [d for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] == "DaemonSet"]
c = ds[0]["spec"]["template"]["spec"]["containers"][0]
got = {p: c.get(p, {}).get("exec", {}).get("command") for p in ("startupProbe", "livenessProbe", "readinessProbe")}
want = {"startupProbe": ["/usr/bin/agentctl", "status", "--brief", "--liveness"],
        "livenessProbe": ["/usr/bin/agentctl", "status", "--brief", "--liveness"],
        "readinessProbe": ["/usr/bin/agentctl", "status", "--brief"]}
if got != want:
    print("probes:", got)
    sys.exit(1)
'
}
check "startup and liveness probes accept a Degraded agent (status --liveness); readiness wants Ok" probes

expect_notes() {
  local out
  out=$(helm_ install nodepath "$CHART" --namespace cilium --dry-run=client "${SEED[@]}" 2>&1) || { echo "$out"; return 1; }
  grep -q 'hubble.ui.enabled=true: nodepath ships no Hubble UI image' <<<"$out" || { echo "no UI note in: $out"; return 1; }
  grep -q 'hubble-relay serves every node.s flows on the Service hubble-relay (port 80)' <<<"$out" ||
    { echo "no relay note in: $out"; return 1; }
}
check "NOTES: hubble.ui without an image says so; the relay says where it serves" expect_notes

# hubble-relay, as Cilium's chart renders it (relay on in the seed's flags).
relay_objects() { # [helm args...]: checks the relay's objects in the render with the seed's flags + args
  render "${SEED[@]}" "$@" | python3 -c '
import sys, yaml
docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
errs = []
dep = by.get(("Deployment", "hubble-relay"))
svc = by.get(("Service", "hubble-relay"))
cm = by.get(("ConfigMap", "hubble-relay-config"))
peer = by.get(("Service", "hubble-peer"))
ds = by.get(("DaemonSet", "nodepath"))
if not (dep and svc and cm and peer and ds):
    print("missing objects; rendered:", sorted(k[0] + "/" + k[1] for k in by))
    sys.exit(1)
pod = dep["spec"]["template"]
c = pod["spec"]["containers"][0]
if dep["spec"]["replicas"] != 1: errs.append("relay replicas %r, not 1" % dep["spec"]["replicas"])
if c["image"] != "localhost/hubble-relay:v1.20.2": errs.append("relay image %r" % c["image"])
if dep["metadata"]["namespace"] != "cilium": errs.append("relay namespace %r" % dep["metadata"]["namespace"])
ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
if str(ports.get("grpc")) != "4245": errs.append("relay container ports %r, not grpc 4245" % ports)
sel = dep["spec"]["selector"]["matchLabels"]
if not all(pod["metadata"]["labels"].get(k) == v for k, v in sel.items()): errs.append("the Deployment selector %r does not match its pods %r" % (sel, pod["metadata"]["labels"]))
# the Service: 80 -> grpc, selecting the relay pods and not the agents
sp = svc["spec"]["ports"]
if len(sp) != 1 or sp[0]["port"] != 80 or sp[0]["targetPort"] != "grpc": errs.append("hubble-relay Service ports %r, not 80 -> grpc" % sp)
ssel = svc["spec"]["selector"]
plabels = pod["metadata"]["labels"]
alabels = ds["spec"]["template"]["metadata"]["labels"]
if not ssel or not all(plabels.get(k) == v for k, v in ssel.items()): errs.append("hubble-relay Service selector %r does not select the relay pods %r" % (ssel, plabels))
if ssel and all(alabels.get(k) == v for k, v in ssel.items()): errs.append("hubble-relay Service selector %r also selects the agents" % ssel)
# the config file, mounted where hubble-relay reads it
cfg = yaml.safe_load(cm["data"]["config.yaml"])
want = {"peer-service": "hubble-peer.cilium.svc.cluster.local:80", "listen-address": ":4245",
        "disable-client-tls": True, "disable-server-tls": True}
for k, v in want.items():
    if cfg.get(k) != v: errs.append("config.yaml %s is %r, not %r" % (k, cfg.get(k), v))
mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
vols = {v["name"]: v for v in pod["spec"].get("volumes", [])}
if vols.get(mounts.get("/etc/hubble-relay"), {}).get("configMap", {}).get("name") != "hubble-relay-config": errs.append("hubble-relay-config is not mounted at /etc/hubble-relay: %r %r" % (mounts, vols))
if pod["spec"].get("automountServiceAccountToken") is not False: errs.append("the relay pod mounts an API token it does not need")
# its peer service: the agents, 80 -> 4244 (what the agent listens on)
pp = peer["spec"]["ports"]
if len(pp) != 1 or pp[0]["port"] != 80 or pp[0]["targetPort"] != 4244: errs.append("hubble-peer ports %r, not 80 -> 4244" % pp)
if not all(alabels.get(k) == v for k, v in peer["spec"]["selector"].items()): errs.append("hubble-peer does not select the agents")
aports = {p["containerPort"] for p in ds["spec"]["template"]["spec"]["containers"][0].get("ports", [])}
if 4244 not in aports: errs.append("the agent declares no port 4244: %r" % aports)
if errs:
    print("\n".join(errs))
    sys.exit(1)
'
}
check "hubble.relay.enabled=true: Deployment hubble-relay (1 replica, the relay image, grpc 4245), its ConfigMap (hubble-peer:80, :4245, plaintext), Service hubble-relay 80 -> grpc selecting it alone, hubble-peer 80 -> the agents' 4244" relay_objects
relay_values() { # Cilium's value names change what they say
  local out
  out=$(render "${SEED[@]}" --set hubble.relay.replicas=2 --set hubble.relay.image.repository=reg.example/hubble-relay \
    --set hubble.relay.image.tag=v9 --set hubble.relay.servicePort=4245 --set hubble.relay.retryTimeout=3s) || { echo "helm template failed"; return 1; }
  python3 -c '
import sys, yaml
docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(sys.stdin) if d}
dep, svc, cm = docs[("Deployment", "hubble-relay")], docs[("Service", "hubble-relay")], docs[("ConfigMap", "hubble-relay-config")]
got = (dep["spec"]["replicas"], dep["spec"]["template"]["spec"]["containers"][0]["image"], svc["spec"]["ports"][0]["port"],
       yaml.safe_load(cm["data"]["config.yaml"]).get("retry-timeout"))
if got != (2, "reg.example/hubble-relay:v9", 4245, "3s"):
    print("replicas, image, service port, retry-timeout:", got)
    sys.exit(1)
' <<<"$out"
}
check "hubble.relay.replicas/image.repository/image.tag/servicePort/retryTimeout change the relay" relay_values
no_relay() { # [helm args...]: nothing of the relay rendered
  local out
  out=$(render "${SEED[@]}" "$@") || { echo "helm template failed"; return 1; }
  if grep -nE '^  name: hubble-relay|hubble-relay-config|image: .*hubble-relay' <<<"$out"; then
    echo "(relay objects rendered with $*)"
    return 1
  fi
  grep -q '^  name: hubble-peer$' <<<"$out" || { echo "the hubble-peer Service went too"; return 1; }
}
check "hubble.relay.enabled=false: no relay object (the hubble-peer Service stays)" no_relay --set hubble.relay.enabled=false
check "hubble.enabled=false with the relay on is refused, saying why" expect_refused 'hubble.relay.enabled=true needs hubble.enabled=true' \
  --set hubble.enabled=false --set hubble.relay.enabled=true
pinned_tag() { # the chart's default relay tag is the version scripts/image.sh --image hubble-relay builds
  local pin tag
  pin=$(awk '$1 == "require" && $2 == "github.com/cilium/cilium" { print $3 }' "$E2E_REPO/test/tools/go/hubble/go.mod")
  tag=$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["hubble"]["relay"]["image"]["tag"])' "$CHART/values.yaml")
  [[ -n $pin && $pin == "$tag" ]] && return 0
  echo "values.yaml hubble.relay.image.tag '$tag', the pinned hubble-relay '$pin'"
  return 1
}
check "the default hubble.relay.image.tag is the pinned hubble-relay's version (the image scripts/image.sh builds)" pinned_tag

# k8s_up applied deploy/rbac as the other tests need it; the chart owns those objects here.
require "deploy/rbac's agent and operator objects deleted (the release will own them)" \
  eval 'k8s_kubectl delete -f "$E2E_REPO/deploy/rbac/agent.yaml" -f "$E2E_REPO/deploy/rbac/operator.yaml" >/dev/null'
check "helm install with the seed's flags" eval 'helm_ install nodepath "$CHART" --namespace cilium "${SEED[@]}" >/dev/null'
check "...creates the DaemonSet, the operator Deployment (1 replica), the ConfigMap and hubble-relay" eval \
  'k8s_kubectl -n cilium get ds/nodepath cm/nodepath-config deploy/hubble-relay svc/hubble-relay cm/hubble-relay-config >/dev/null &&
   [[ $(k8s_kubectl -n cilium get deploy nodepath-operator -o jsonpath={.spec.replicas}) == 1 ]]'
can_i() { # <want yes|no> <verb> <resource> <namespace>: as the release's agent ServiceAccount
  local got
  got=$(k8s_kubectl auth can-i --as=system:serviceaccount:cilium:nodepath-agent "$2" "$3" -n "$4" 2>/dev/null) || true
  [[ $got == "$1" ]] && return 0
  echo "kubectl auth can-i --as=system:serviceaccount:cilium:nodepath-agent $2 $3 -n $4: expected $1, got '$got'"
  return 1
}
check "...whose agent ServiceAccount may create and update Leases in cilium (L2 announcements)" \
  eval 'can_i yes create leases.coordination.k8s.io cilium && can_i yes update leases.coordination.k8s.io cilium &&
        can_i yes watch leases.coordination.k8s.io cilium'
check "...but not in another namespace (default)" can_i no create leases.coordination.k8s.io default
sum() { k8s_kubectl -n cilium get ds nodepath -o jsonpath='{.spec.template.metadata.annotations.nodepath\.io/config-checksum}'; }
sum0=$(sum)
check "helm upgrade with loadBalancer.mode=snat" \
  eval 'helm_ upgrade nodepath "$CHART" --namespace cilium "${SEED[@]}" --set loadBalancer.mode=snat >/dev/null'
check "...changes the ConfigMap" eval '[[ $(k8s_kubectl -n cilium get cm nodepath-config -o jsonpath={.data.bpf-lb-mode}) == snat ]]'
check "...and the pod template (the agents restart with it)" eval '[[ $(sum) != "$sum0" ]]'
check "helm uninstall" eval 'helm_ uninstall nodepath --namespace cilium >/dev/null'
check "...removes the DaemonSet, Deployments, ConfigMap, hubble-relay and RBAC" eval \
  '! k8s_kubectl -n cilium get ds/nodepath 2>/dev/null && ! k8s_kubectl -n cilium get deploy/nodepath-operator 2>/dev/null &&
   ! k8s_kubectl -n cilium get deploy/hubble-relay 2>/dev/null && ! k8s_kubectl -n cilium get svc/hubble-relay 2>/dev/null &&
   ! k8s_kubectl -n cilium get cm/nodepath-config 2>/dev/null && ! k8s_kubectl get clusterrole/nodepath-agent 2>/dev/null'

e2e_finish
