// Package e2e proves the operator on real nodes: a real control plane
// (etcd, kube-apiserver and kube-controller-manager built by
// hack/envtest-assets.sh), the operator binary running as a process with the
// RBAC rules of config/rbac, and a small test kubelet (Kubelet) that runs
// every pod bound to its Node as a real imnode process.
//
// The kubelet is what a container runtime and kubelet would be on a real
// node, reduced to what imcluster's pods use: it binds pending pods to its
// Node (there is no kube-scheduler), provisions a PersistentVolume for each
// claim (kube-controller-manager's binder binds them), gives each pod its own
// loopback address, runs the container in a private mount namespace chrooted
// into a per-pod root where the image is the imnode binary built for that
// tag and the volumes (ConfigMaps, Secrets, claims, emptyDirs) are bind
// mounts, resolves env (values, fieldRef, secretKeyRef, configMapKeyRef) and
// $(VAR) references, runs the startup, readiness and liveness probes and the
// preStop hook, restarts exited containers, and reports pod status. A pod's
// network namespace is simulated: the kubelet substitutes the pod's address
// for 0.0.0.0 and 127.0.0.1 in the container's command, args and env, and
// pod and headless-Service DNS names resolve through an /etc/hosts it writes
// into every pod's root (and into the operator's mount namespace), so no
// lookup leaves the machine. Every address is in 127.0.0.0/8.
//
// The scenarios (build tag e2e, `make test-e2e`) run under continuous chat
// load from the Go client with a ledger of acknowledged messages (the load
// and checks of test/chaos) and print, per scenario: duration,
// acknowledged/lost, time with a shard under-replicated, client errors seen.
// After each one every acknowledged message is on every replica, replicas
// hold identical data (shard digests), and status and events tell the truth.
package e2e
