// Command imcluster-operator runs the IMCluster controller: flags and wiring
// only; the logic lives in operator/internal/controller.
package main

import (
	"flag"
	"os"
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
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	imv1 "github.com/imcluster/imcluster/api/v1"
	"github.com/imcluster/imcluster/operator/internal/controller"
)

func main() {
	var (
		metricsAddr, probeAddr, leaderNS string
		leaderElect                      bool
		poll, resync                     time.Duration
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address of the metrics endpoint; 0 disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of /healthz and /readyz.")
	flag.BoolVar(&leaderElect, "leader-elect", true, "Elect a leader so only one replica reconciles.")
	flag.StringVar(&leaderNS, "leader-election-namespace", "", "Namespace of the leader election Lease; empty means the pod's.")
	flag.DurationVar(&poll, "poll-interval", controller.DefaultPollInterval, "Node admin API polling while an operation is in flight.")
	flag.DurationVar(&resync, "resync-interval", controller.DefaultResyncInterval, "Status refresh of a converged cluster.")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(imv1.AddToScheme(scheme))

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:  probeAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        "imcluster-operator.imcluster.io",
		LeaderElectionNamespace: leaderNS,
		// Only the pods of IMClusters are cached, not every pod of the cluster.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {Label: labels.SelectorFromSet(labels.Set{"app.kubernetes.io/managed-by": "imcluster-operator"})},
		}},
	})
	if err != nil {
		log.Error(err, "Failed to create the manager")
		os.Exit(1)
	}
	r := &controller.IMClusterReconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("imcluster-operator"),
		Config:   controller.Config{PollInterval: poll, ResyncInterval: resync},
	}
	if err := r.SetupWithManager(mgr); err != nil {
		log.Error(err, "Failed to set up the controller")
		os.Exit(1)
	}
	utilruntime.Must(mgr.AddHealthzCheck("healthz", healthz.Ping))
	utilruntime.Must(mgr.AddReadyzCheck("readyz", healthz.Ping))
	log.Info("Starting the manager")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "Manager exited")
		os.Exit(1)
	}
}
