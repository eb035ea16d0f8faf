//go:build tools

// Package tools pins kube-apiserver and kubectl (the k8s tier) and kubelet, kube-controller-manager
// and kube-scheduler (the cluster tier) from k8s.io/kubernetes/cmd/... as dependencies of this
// module, so `go build k8s.io/kubernetes/cmd/kube-apiserver` uses the versions go.sum fixes.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
