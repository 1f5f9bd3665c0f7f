//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// volumes prepares every volume of p and returns the bind mounts of c's
// volumeMounts. ConfigMaps and Secrets are written as files (one per key,
// or per item) and rewritten by refreshVolumes when they change; a claim
// mounts its PersistentVolume's directory, which outlives the pod; an
// emptyDir lives as long as the pod.
func (r *podRunner) volumes(ctx context.Context, p *corev1.Pod, c *corev1.Container) ([]shimMount, error) {
	dirs := map[string]string{}
	for i := range p.Spec.Volumes {
		v := &p.Spec.Volumes[i]
		dir, err := r.volume(ctx, p, v)
		if err != nil {
			return nil, fmt.Errorf("volume %q: %w", v.Name, err)
		}
		dirs[v.Name] = dir
	}
	var mounts []shimMount
	for _, m := range c.VolumeMounts {
		dir, ok := dirs[m.Name]
		if !ok {
			return nil, fmt.Errorf("volumeMount %q names no volume", m.Name)
		}
		if m.SubPath != "" {
			dir = filepath.Join(dir, filepath.Clean("/"+m.SubPath))
		}
		mounts = append(mounts, shimMount{Source: dir, Target: m.MountPath, ReadOnly: m.ReadOnly})
	}
	// Parents before children: a mount nested in another (apps inside the
	// config directory) must come after it.
	slices.SortStableFunc(mounts, func(a, b shimMount) int { return len(a.Target) - len(b.Target) })
	return mounts, nil
}

func (r *podRunner) volume(ctx context.Context, p *corev1.Pod, v *corev1.Volume) (string, error) {
	dir := filepath.Join(r.dir, "volumes", v.Name)
	switch {
	case v.PersistentVolumeClaim != nil:
		return r.claimDir(ctx, p, v.PersistentVolumeClaim.ClaimName)
	case v.EmptyDir != nil:
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return "", err
		}
		return dir, os.Chmod(dir, 0o1777)
	case v.ConfigMap != nil, v.Secret != nil:
		files, err := r.sourceFiles(ctx, p.Namespace, v)
		if err != nil {
			return "", err
		}
		return dir, writeVolumeFiles(dir, files, fileOwner(p))
	}
	return "", fmt.Errorf("the e2e kubelet does not support this volume source")
}

// claimDir returns the directory of the PersistentVolume bound to the claim,
// made writable by the pod's fsGroup (as a kubelet does on mount).
func (r *podRunner) claimDir(ctx context.Context, p *corev1.Pod, claim string) (string, error) {
	pvc, err := r.k.cfg.Client.CoreV1().PersistentVolumeClaims(p.Namespace).Get(ctx, claim, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if pvc.Spec.VolumeName == "" {
		return "", fmt.Errorf("claim %s is not bound", claim)
	}
	pv, err := r.k.cfg.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if pv.Spec.HostPath == nil {
		return "", fmt.Errorf("volume %s is not one the e2e kubelet provisioned", pv.Name)
	}
	dir := pv.Spec.HostPath.Path
	if sc := p.Spec.SecurityContext; sc != nil && sc.FSGroup != nil {
		if err := os.Chown(dir, -1, int(*sc.FSGroup)); err != nil {
			return "", err
		}
		if err := os.Chmod(dir, 0o775|os.ModeSetgid); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// volumeFile is one file of a ConfigMap or Secret volume.
type volumeFile struct {
	data []byte
	mode os.FileMode
}

// fileOwner is the group a kubelet gives volume files: the pod's fsGroup,
// or -1 (unchanged).
func fileOwner(p *corev1.Pod) int {
	if sc := p.Spec.SecurityContext; sc != nil && sc.FSGroup != nil {
		return int(*sc.FSGroup)
	}
	return -1
}

// sourceFiles reads the ConfigMap or Secret of v and returns the files the
// volume holds (name -> content and mode: the item's, else defaultMode,
// else 0644).
func (r *podRunner) sourceFiles(ctx context.Context, ns string, v *corev1.Volume) (map[string]volumeFile, error) {
	data := map[string][]byte{}
	var (
		items    []corev1.KeyToPath
		optional bool
		mode     = int32(0o644)
	)
	if cm := v.ConfigMap; cm != nil {
		items, optional = cm.Items, ptr.Deref(cm.Optional, false)
		mode = ptr.Deref(cm.DefaultMode, mode)
		obj, err := r.k.cfg.Client.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err) && optional:
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("configmap %s: %w", cm.Name, err)
		}
		for k, s := range obj.Data {
			data[k] = []byte(s)
		}
		maps.Copy(data, obj.BinaryData)
	} else {
		sv := v.Secret
		items, optional = sv.Items, ptr.Deref(sv.Optional, false)
		mode = ptr.Deref(sv.DefaultMode, mode)
		obj, err := r.k.cfg.Client.CoreV1().Secrets(ns).Get(ctx, sv.SecretName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err) && optional:
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("secret %s: %w", sv.SecretName, err)
		}
		data = obj.Data
	}
	files := map[string]volumeFile{}
	if len(items) == 0 {
		for k, b := range data {
			files[k] = volumeFile{data: b, mode: os.FileMode(mode) & os.ModePerm}
		}
		return files, nil
	}
	for _, it := range items {
		b, ok := data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return nil, fmt.Errorf("key %q not found", it.Key)
		}
		files[it.Path] = volumeFile{data: b, mode: os.FileMode(ptr.Deref(it.Mode, mode)) & os.ModePerm}
	}
	return files, nil
}

// writeVolumeFiles makes dir hold exactly files (plus any mount-point
// directories made in it), each replaced atomically when its content
// changed, with its mode and, when gid >= 0, owned by that group (fsGroup).
func writeVolumeFiles(dir string, files map[string]volumeFile, gid int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, f := range files {
		path := filepath.Join(dir, filepath.Clean("/"+name))
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, f.data) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			return err
		}
		if err := os.Chown(tmp, -1, gid); err != nil {
			return err
		}
		if err := os.Chmod(tmp, f.mode); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, ok := files[e.Name()]; !ok && !e.IsDir() {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// refreshVolumes rewrites ConfigMap and Secret volumes whose source changed
// (a kubelet's periodic sync). Errors leave the old files in place.
func (r *podRunner) refreshVolumes(ctx context.Context) {
	p := r.current()
	for i := range p.Spec.Volumes {
		v := &p.Spec.Volumes[i]
		if v.ConfigMap == nil && v.Secret == nil {
			continue
		}
		files, err := r.sourceFiles(ctx, p.Namespace, v)
		if err != nil {
			continue
		}
		if err := writeVolumeFiles(filepath.Join(r.dir, "volumes", v.Name), files, fileOwner(p)); err != nil && ctx.Err() == nil {
			r.logf("refresh volume %s: %v", v.Name, err)
		}
	}
}

// env resolves c's environment: envFrom, then env in order (values may
// refer to earlier variables as $(NAME)).
func (r *podRunner) env(ctx context.Context, p *corev1.Pod, c *corev1.Container) ([]string, error) {
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	set("PATH", "/usr/local/bin:/usr/bin:/bin")
	set("HOSTNAME", p.Name)
	cm := r.k.cfg.Client.CoreV1().ConfigMaps(p.Namespace)
	sec := r.k.cfg.Client.CoreV1().Secrets(p.Namespace)
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			obj, err := cm.Get(ctx, from.ConfigMapRef.Name, metav1.GetOptions{})
			if err != nil {
				if apierrors.IsNotFound(err) && ptr.Deref(from.ConfigMapRef.Optional, false) {
					continue
				}
				return nil, fmt.Errorf("envFrom configmap %s: %w", from.ConfigMapRef.Name, err)
			}
			for k, v := range obj.Data {
				set(from.Prefix+k, v)
			}
		case from.SecretRef != nil:
			obj, err := sec.Get(ctx, from.SecretRef.Name, metav1.GetOptions{})
			if err != nil {
				if apierrors.IsNotFound(err) && ptr.Deref(from.SecretRef.Optional, false) {
					continue
				}
				return nil, fmt.Errorf("envFrom secret %s: %w", from.SecretRef.Name, err)
			}
			for k, v := range obj.Data {
				set(from.Prefix+k, string(v))
			}
		}
	}
	lookup := func(name string) (string, bool) { v, ok := vars[name]; return v, ok }
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, expand(e.Value, lookup))
			continue
		}
		v, ok, err := r.envFrom(ctx, p, e.ValueFrom)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		if ok {
			set(e.Name, v)
		}
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+r.podNet(vars[k]))
	}
	return out, nil
}

func (r *podRunner) envFrom(ctx context.Context, p *corev1.Pod, src *corev1.EnvVarSource) (string, bool, error) {
	switch {
	case src.FieldRef != nil:
		v, err := r.fieldRef(p, src.FieldRef.FieldPath)
		return v, err == nil, err
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		obj, err := r.k.cfg.Client.CoreV1().Secrets(p.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) && ptr.Deref(ref.Optional, false) {
				return "", false, nil
			}
			return "", false, fmt.Errorf("secret %s: %w", ref.Name, err)
		}
		b, ok := obj.Data[ref.Key]
		if !ok && !ptr.Deref(ref.Optional, false) {
			return "", false, fmt.Errorf("secret %s has no key %q", ref.Name, ref.Key)
		}
		return string(b), ok, nil
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		obj, err := r.k.cfg.Client.CoreV1().ConfigMaps(p.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) && ptr.Deref(ref.Optional, false) {
				return "", false, nil
			}
			return "", false, fmt.Errorf("configmap %s: %w", ref.Name, err)
		}
		v, ok := obj.Data[ref.Key]
		if !ok && !ptr.Deref(ref.Optional, false) {
			return "", false, fmt.Errorf("configmap %s has no key %q", ref.Name, ref.Key)
		}
		return v, ok, nil
	}
	return "", false, fmt.Errorf("the e2e kubelet does not support this env source")
}

func (r *podRunner) fieldRef(p *corev1.Pod, path string) (string, error) {
	switch path {
	case "metadata.name":
		return p.Name, nil
	case "metadata.namespace":
		return p.Namespace, nil
	case "metadata.uid":
		return string(p.UID), nil
	case "spec.nodeName":
		return p.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return p.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		return r.ip, nil
	case "status.hostIP", "status.hostIPs":
		return r.k.hostIP(), nil
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": p.Labels, "metadata.annotations": p.Annotations} {
		if rest, ok := strings.CutPrefix(path, prefix+"['"); ok {
			if key, ok := strings.CutSuffix(rest, "']"); ok {
				return m[key], nil
			}
		}
	}
	return "", fmt.Errorf("fieldRef %q is not supported by the e2e kubelet", path)
}

// expand replaces $(NAME) by the variable's value when it is defined and
// $$ by $, as Kubernetes expands command, args and env values.
func expand(s string, lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '$' && i+1 < len(s) {
			switch s[i+1] {
			case '$':
				b.WriteByte('$')
				i++
				continue
			case '(':
				if j := strings.IndexByte(s[i+2:], ')'); j >= 0 {
					name := s[i+2 : i+2+j]
					if v, ok := lookup(name); ok {
						b.WriteString(v)
					} else {
						b.WriteString(s[i : i+3+j])
					}
					i += 2 + j
					continue
				}
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
