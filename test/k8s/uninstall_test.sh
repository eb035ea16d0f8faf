#!/usr/bin/env bash
# K8sUninstallRemovesDatapath: the chart's uninstall marker (agent/uninstall.h,
# deploy/helm/nodepath/templates/uninstall-marker.yaml) against a real kube-apiserver:
#  - an agent stopped without the marker (an upgrade) leaves its datapath in place;
#  - a starting agent deletes a marker left by an earlier uninstall;
#  - an agent stopped while the marker exists (helm uninstall) removes its tc programs, pins,
#    conflist and routes before it exits.
#
# Lab: agent on n1 with the admin kubeconfig; kube-apiserver + etcd in n1.
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init K8sUninstallRemovesDatapath npk8s_uninst
export NODEPATH_UNINSTALL_MARKER=cilium/nodepath-uninstall
NODEPATH_AGENTCTL=$(lab__bin agentctl)
export NODEPATH_AGENTCTL
k8s_lab_up n1
N1=$NP_LAB_PREFIX-n1
CONF=$NP_LAB_DIR/n1/cni/net.d/05-nodepath.conflist
PINS=$NP_LAB_DIR/bpffs/n1/nodepath
marker() { k8s_kubectl -n cilium create configmap nodepath-uninstall --from-literal=reason=test >/dev/null; }
no_marker() { ! k8s_kubectl -n cilium get configmap nodepath-uninstall >/dev/null 2>&1; }
datapath_there() {
  [[ $(tcx_prog "$PINS/links/tcx_ens192_ingress") == np_from_netdev && -s $CONF ]] && return 0
  echo "tcx ingress link on ens192 runs '$(tcx_prog "$PINS/links/tcx_ens192_ingress")'; pins: $(ls -d "$PINS" 2>&1); conflist: $(ls "$CONF" 2>&1)"
  return 1
}
datapath_gone() {
  local tcs
  tcs=$(tc -n "$N1" filter show dev ens192 ingress; tc -n "$N1" filter show dev ens192 egress)
  [[ -z $tcs && ! -e $PINS && ! -e $CONF ]] && return 0
  echo "left: tc '$tcs'; pins: $(ls -d "$PINS" 2>&1); conflist: $(ls "$CONF" 2>&1)"
  return 1
}

check "the datapath is up (a tcx link on ens192, pinned; conflist)" eventually 10 datapath_there
require "agent on n1 stopped with SIGTERM, no marker (an upgrade)" lab_agent_stop n1
check "...the datapath stays" datapath_there

require "a marker left by an earlier uninstall" marker
require "agent on n1 started again" lab_agent_start n1 --k8s-kubeconfig-path "$NP_LAB_DIR/k8s/admin.kubeconfig"
require "agent on n1 ready" lab_agent_wait n1 30
check "the starting agent deleted the stale marker" eventually 10 no_marker
check "the datapath is up" eventually 10 datapath_there

require "the marker created (helm uninstall's pre-delete hook)" marker
# helm uninstall deletes the agent's ServiceAccount right after the hook: the agent must learn of
# the marker while it runs (its watch), not only by asking when it stops.
check "the running agent saw the marker appear (its watch)" eventually 10 \
  grep -q "the uninstall marker appeared" "$NP_LAB_DIR/n1/agent.log"
IN_LINK=$(tcx_link_id "$PINS/links/tcx_ens192_ingress")
require "ens192's tcx ingress link is pinned (${IN_LINK:-none})" test -n "$IN_LINK"
require "agent on n1 stopped with SIGTERM" lab_agent_stop n1
check "...it removed its tc filters, pins and conflist on the way out" datapath_gone
check "...and its tcx ingress link (${IN_LINK:-none}) is released, off ens192" eventually 10 expect_link_gone "$IN_LINK"
check "...and said so in its log" grep -q "nodepath is being uninstalled" "$NP_LAB_DIR/n1/agent.log"

e2e_finish
