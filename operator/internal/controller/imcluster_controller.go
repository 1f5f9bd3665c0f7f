package controller

import (
	"context"
	"fmt"
	"net/http"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	imv1 "github.com/imcluster/imcluster/api/v1"
	"github.com/imcluster/imcluster/node/adminapi"
)

// Finalizer lets the operator apply the PVC reclaim policy before the
// IMCluster goes away.
const Finalizer = "imcluster.io/finalizer"

// Defaults of Config.
const (
	// DefaultPollInterval re-reads the nodes while an operation is in flight:
	// drain and catch-up progress is not watchable, so it is polled.
	DefaultPollInterval = 5 * time.Second
	// DefaultResyncInterval refreshes status of a converged cluster.
	DefaultResyncInterval = 60 * time.Second
	// DefaultStuckAfter is how long a pod may stay not ready after its start
	// before it is reported as Degraded even without a crash or pull error.
	DefaultStuckAfter = 5 * time.Minute
	// DefaultClusterDomain is the usual Kubernetes cluster DNS domain.
	DefaultClusterDomain = "cluster.local"
)

// Version is the operator's version, stamped at build time
// (-X github.com/imcluster/imcluster/operator/internal/controller.Version=...).
// An IMCluster without spec.version runs imnode of this version.
var Version = "dev"

// AdminURLFunc returns the admin API base URL of a pod of an IMCluster.
type AdminURLFunc func(c *imv1.IMCluster, pod string) string

// DefaultAdminURL reaches a pod through the headless peer Service DNS name.
func DefaultAdminURL(c *imv1.IMCluster, pod string) string {
	return fmt.Sprintf("http://%s.%s.%s.svc:%d", pod, peerServiceName(c), c.Namespace, imv1.DefaultAdminPort)
}

// Config holds the reconciler's knobs and injected dependencies.
type Config struct {
	// AdminURL resolves a pod's admin base URL. Nil means DefaultAdminURL.
	AdminURL AdminURLFunc
	// HTTPClient calls the admin API. Nil means a client with a 5s timeout.
	HTTPClient *http.Client
	// PollInterval while an operation is in flight. Zero value means 5s.
	PollInterval time.Duration
	// ResyncInterval once converged. Zero value means 60s.
	ResyncInterval time.Duration
	// StuckAfter: zero value means 5m.
	StuckAfter time.Duration
	// NodeVersion is the imnode version of clusters without spec.version.
	// Empty means Version.
	NodeVersion string
	// OperatorNamespace and OperatorPodLabels identify the operator's pods, the
	// ones the NetworkPolicy lets reach the admin port. An empty namespace
	// matches those labels in every namespace.
	OperatorNamespace string
	OperatorPodLabels map[string]string
	// ClusterDomain is the Kubernetes cluster's DNS domain, in the node
	// certificates' names and the host names the nodes serve. Empty means
	// DefaultClusterDomain.
	ClusterDomain string
	// Now is the clock of certificate renewal and rotation. Nil means time.Now.
	Now func() time.Time
}

// IMClusterReconciler reconciles IMCluster objects. It keeps no state between
// reconciles and is safe for the concurrent use controller-runtime makes of it.
type IMClusterReconciler struct {
	client.Client
	Recorder recorder.EventRecorder
	Config   Config
}

// +kubebuilder:rbac:groups=imcluster.io,resources=imclusters,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=imcluster.io,resources=imclusters/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=imcluster.io,resources=imclusters/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=statefulsets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=services;configmaps;secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;watch;update;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// Leader election records its LeaseAcquired events through the core/v1 API.
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=monitoring.coreos.com,resources=servicemonitors,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=monitoring.coreos.com,resources=prometheusrules,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// Reconcile moves one IMCluster one step towards its spec.
func (r *IMClusterReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, reterr error) {
	log := logf.FromContext(ctx)
	c := &imv1.IMCluster{}
	if err := r.Get(ctx, req.NamespacedName, c); err != nil {
		if apierrors.IsNotFound(err) {
			forgetCluster(req.Namespace, req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}

	if !c.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, c)
	}
	if !controllerutil.ContainsFinalizer(c, Finalizer) {
		patch := client.MergeFrom(c.DeepCopy())
		controllerutil.AddFinalizer(c, Finalizer)
		if err := r.Patch(ctx, c, patch); err != nil {
			return ctrl.Result{}, err
		}
	}

	s := &scope{cluster: c, before: c.DeepCopy(), version: c.EffectiveVersion(r.nodeVersion())}
	defer func() {
		if err := r.patchStatus(ctx, s); err != nil {
			log.Error(err, "Failed to patch IMCluster status", "IMCluster", klog.KObj(c))
			reterr = kerrors.NewAggregate([]error{reterr, err})
		}
	}()

	phases := []phase{r.reconcileAdminToken, r.reconcileCredentials, r.reconcileConfigMap, r.reconcileServices,
		r.reconcilePDB, r.reconcileNetworkPolicy, r.reconcileServiceMonitor, r.reconcilePrometheusRule, r.observe, r.reconcileRotation,
		r.reconcileFormation, r.reconcileStatefulSet,
		r.reconcilePVCs, r.reconcileStep}
	if c.IsPaused() {
		phases = []phase{r.observe}
	}
	res := ctrl.Result{}
	for _, p := range phases {
		pr, err := p(ctx, s)
		if err != nil {
			return ctrl.Result{}, err
		}
		res = lowestRequeue(res, pr)
		if s.stop {
			break
		}
	}
	return lowestRequeue(res, r.requeueFor(s)), nil
}

// phase is one stage of a reconcile. It sets s.stop to end the pass early.
type phase func(ctx context.Context, s *scope) (ctrl.Result, error)

func (r *IMClusterReconciler) requeueFor(s *scope) ctrl.Result {
	if s.operation != nil || len(s.degraded) > 0 || s.progressing != "" {
		return ctrl.Result{RequeueAfter: r.pollInterval()}
	}
	return ctrl.Result{RequeueAfter: r.resyncInterval()}
}

func lowestRequeue(a, b ctrl.Result) ctrl.Result {
	switch {
	case a.RequeueAfter == 0:
		return b
	case b.RequeueAfter == 0:
		return a
	case b.RequeueAfter < a.RequeueAfter:
		return b
	}
	return a
}

func (r *IMClusterReconciler) reconcileDelete(ctx context.Context, c *imv1.IMCluster) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(c, Finalizer) {
		return ctrl.Result{}, nil
	}
	if c.Spec.Storage.ReclaimPolicy == imv1.ReclaimDelete {
		pvcs := &corev1.PersistentVolumeClaimList{}
		if err := r.List(ctx, pvcs, client.InNamespace(c.Namespace), client.MatchingLabels(selectorLabels(c))); err != nil {
			return ctrl.Result{}, err
		}
		for i := range pvcs.Items {
			if err := r.Delete(ctx, &pvcs.Items[i]); client.IgnoreNotFound(err) != nil {
				return ctrl.Result{}, err
			}
		}
		r.event(c, corev1.EventTypeNormal, "VolumesDeleted", "Delete",
			"Deleted %d volume claims (reclaimPolicy Delete)", len(pvcs.Items))
	} else {
		r.event(c, corev1.EventTypeNormal, "VolumesRetained", "Delete",
			"Kept the volume claims (reclaimPolicy Retain); delete them by label %s=%s", labelInstance, c.Name)
	}
	patch := client.MergeFrom(c.DeepCopy())
	controllerutil.RemoveFinalizer(c, Finalizer)
	return ctrl.Result{}, client.IgnoreNotFound(r.Patch(ctx, c, patch))
}

func (r *IMClusterReconciler) event(c *imv1.IMCluster, eventtype, reason, action, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(c, nil, eventtype, reason, action, note, args...)
	}
}

func (r *IMClusterReconciler) pollInterval() time.Duration {
	if r.Config.PollInterval > 0 {
		return r.Config.PollInterval
	}
	return DefaultPollInterval
}

func (r *IMClusterReconciler) resyncInterval() time.Duration {
	if r.Config.ResyncInterval > 0 {
		return r.Config.ResyncInterval
	}
	return DefaultResyncInterval
}

func (r *IMClusterReconciler) nodeVersion() string {
	if r.Config.NodeVersion != "" {
		return r.Config.NodeVersion
	}
	return Version
}

func (r *IMClusterReconciler) clusterDomain() string {
	if r.Config.ClusterDomain != "" {
		return r.Config.ClusterDomain
	}
	return DefaultClusterDomain
}

// DefaultOperatorPodLabels select the chart's operator pods when
// Config.OperatorPodLabels is empty.
var DefaultOperatorPodLabels = map[string]string{labelName: "imcluster", labelComponent: "operator"}

func (r *IMClusterReconciler) operatorPodLabels() map[string]string {
	if len(r.Config.OperatorPodLabels) > 0 {
		return r.Config.OperatorPodLabels
	}
	return DefaultOperatorPodLabels
}

func (r *IMClusterReconciler) stuckAfter() time.Duration {
	if r.Config.StuckAfter > 0 {
		return r.Config.StuckAfter
	}
	return DefaultStuckAfter
}

func (r *IMClusterReconciler) adminClient(c *imv1.IMCluster, pod, token string) *adminapi.Client {
	url := r.Config.AdminURL
	if url == nil {
		url = DefaultAdminURL
	}
	hc := r.Config.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: adminapi.DefaultTimeout}
	}
	return adminapi.NewClient(url(c, pod), token, hc)
}

// SetupWithManager registers the controller. Pods are not owned by the
// IMCluster (the StatefulSet owns them), so they are mapped by label.
func (r *IMClusterReconciler) SetupWithManager(mgr ctrl.Manager) error {
	podToCluster := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		l := o.GetLabels()
		if l[labelManagedBy] != managedBy || l[labelInstance] == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: l[labelInstance]}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		For(&imv1.IMCluster{}).
		Owns(&appsv1.StatefulSet{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ConfigMap{}).
		Owns(&corev1.Secret{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&networkingv1.NetworkPolicy{}).
		Watches(&corev1.Pod{}, podToCluster).
		Named("imcluster").
		Complete(r)
}
