// Command imcluster-operator runs the IMCluster controller: flags and wiring
// only; the logic lives in operator/internal/controller.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	imv1 "github.com/imcluster/imcluster/api/v1"
	"github.com/imcluster/imcluster/operator/internal/controller"
)

// defaultOperatorLabels select the chart's operator pods (its selector labels
// without the release name).
const defaultOperatorLabels = "app.kubernetes.io/name=imcluster,app.kubernetes.io/component=operator"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "imcluster-operator:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		metricsAddr, probeAddr, leaderNS string
		watchNS, nodeVersion, selfLabels string
		selfNS, clusterDomain            string
		leaderElect, metricsSecure       bool
		poll, resync                     time.Duration
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address of the metrics endpoint; 0 disables it.")
	flag.BoolVar(&metricsSecure, "metrics-secure", true,
		"Serve metrics over HTTPS and only to callers whose bearer token may GET /metrics (TokenReview and SubjectAccessReview); false serves plain HTTP to anyone.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of /healthz and /readyz.")
	flag.BoolVar(&leaderElect, "leader-elect", true, "Elect a leader so only one replica reconciles.")
	flag.StringVar(&leaderNS, "leader-election-namespace", "", "Namespace of the leader election Lease; empty means the pod's.")
	flag.StringVar(&watchNS, "watch-namespace", "", "Comma-separated namespaces whose IMClusters the operator manages; empty means all.")
	flag.StringVar(&nodeVersion, "node-version", "", "imnode version of IMClusters without spec.version; empty means the operator's own ("+controller.Version+").")
	flag.StringVar(&selfNS, "operator-namespace", os.Getenv("POD_NAMESPACE"),
		"Namespace of the operator's pods, allowed to the nodes' admin port by the NetworkPolicy (default $POD_NAMESPACE; empty: any namespace).")
	flag.StringVar(&selfLabels, "operator-pod-labels", defaultOperatorLabels,
		"Labels (k=v,k=v) of the operator's pods, allowed to the nodes' admin port by the NetworkPolicy.")
	flag.StringVar(&clusterDomain, "cluster-domain", controller.DefaultClusterDomain,
		"DNS domain of the Kubernetes cluster: in the node certificates and the host names the nodes serve (--allowed-hosts).")
	flag.DurationVar(&poll, "poll-interval", controller.DefaultPollInterval, "Node admin API polling while an operation is in flight.")
	flag.DurationVar(&resync, "resync-interval", controller.DefaultResyncInterval, "Status refresh of a converged cluster.")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")

	podLabels, err := labels.ConvertSelectorToLabelsMap(selfLabels)
	if err != nil || len(podLabels) == 0 {
		return fmt.Errorf("--operator-pod-labels %q: want k=v[,k=v...]", selfLabels)
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(imv1.AddToScheme(scheme))

	cacheOpts := cache.Options{ByObject: map[client.Object]cache.ByObject{
		// Only the pods of IMClusters are cached, not every pod of the cluster.
		&corev1.Pod{}: {Label: labels.SelectorFromSet(labels.Set{"app.kubernetes.io/managed-by": "imcluster-operator"})},
	}}
	if watchNS != "" {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{}
		for ns := range strings.SplitSeq(watchNS, ",") {
			if ns = strings.TrimSpace(ns); ns == "" {
				return errors.New("--watch-namespace: empty namespace in the list")
			}
			cacheOpts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	metricsOpts := metricsserver.Options{BindAddress: metricsAddr}
	if metricsSecure {
		// A self-signed certificate generated at start (no cert files given);
		// the chart's ServiceMonitor skips its verification and authenticates
		// with the Prometheus service account token.
		metricsOpts.SecureServing = true
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsOpts,
		HealthProbeBindAddress:  probeAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        "imcluster-operator.imcluster.io",
		LeaderElectionNamespace: leaderNS,
		// main returns as soon as the manager stops, so the lease can be
		// handed over at once on SIGTERM instead of expiring (15 s).
		LeaderElectionReleaseOnCancel: true,
		Cache:                         cacheOpts,
	})
	if err != nil {
		return fmt.Errorf("create the manager: %w", err)
	}
	r := &controller.IMClusterReconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("imcluster-operator"),
		Config: controller.Config{PollInterval: poll, ResyncInterval: resync, NodeVersion: nodeVersion,
			OperatorNamespace: selfNS, OperatorPodLabels: podLabels, ClusterDomain: clusterDomain},
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up the controller: %w", err)
	}
	utilruntime.Must(mgr.AddHealthzCheck("healthz", healthz.Ping))
	utilruntime.Must(mgr.AddReadyzCheck("readyz", healthz.Ping))
	log.Info("Starting the manager", "version", controller.Version, "watchNamespace", watchNS, "metricsSecure", metricsSecure)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		return fmt.Errorf("manager exited: %w", err)
	}
	return nil
}
