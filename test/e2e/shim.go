//go:build e2e

package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// envShim names the environment variable that turns the test binary into the
// container shim: its value is a JSON shimSpec. The kubelet starts the test
// binary itself in a new mount namespace (exec.Cmd's Unshareflags makes every
// mount private to it) with this variable set; TestMain calls runShim, which
// never returns.
const envShim = "IMCLUSTER_E2E_SHIM"

// shimSpec is one process to start inside its own view of the file system.
type shimSpec struct {
	// Root is the directory to chroot into; empty keeps the host's root.
	Root string `json:"root,omitempty"`
	// Mounts are bind mounts, made in order; each Target is a path inside Root.
	Mounts []shimMount `json:"mounts,omitempty"`
	// Path, Args (Args[0] included) and Env of the process, after the chroot.
	Path string   `json:"path"`
	Args []string `json:"args"`
	Env  []string `json:"env"`
	// Dir is the working directory after the chroot; empty means /.
	Dir string `json:"dir,omitempty"`
	// UID, GID and Groups of the process when UID is set (runAsUser, fsGroup).
	UID    *int  `json:"uid,omitempty"`
	GID    int   `json:"gid,omitempty"`
	Groups []int `json:"groups,omitempty"`
}

// shimMount is a bind mount of Source (a host path, file or directory) at
// Target.
type shimMount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// runShim performs spec (from envShim) and execs the process; it only returns
// on failure, with the exit code to use.
func runShim(raw string) int {
	if err := shim(raw); err != nil {
		fmt.Fprintln(os.Stderr, "e2e shim:", err)
	}
	return 127
}

func shim(raw string) error {
	var spec shimSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	if spec.Path == "" {
		return errors.New("spec: no path")
	}
	root := spec.Root
	if root == "" {
		root = "/"
	}
	for _, m := range spec.Mounts {
		target := filepath.Join(root, m.Target)
		if err := mountPoint(m.Source, target); err != nil {
			return err
		}
		if err := syscall.Mount(m.Source, target, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s at %s: %w", m.Source, target, err)
		}
	}
	// Read-only only once every mount point exists: a mount nested in a
	// read-only volume (apps in /etc/imnode) needs its directory made first.
	for _, m := range spec.Mounts {
		target := filepath.Join(root, m.Target)
		if m.ReadOnly {
			flags := uintptr(syscall.MS_BIND | syscall.MS_REMOUNT | syscall.MS_RDONLY)
			if err := syscall.Mount("", target, "", flags, ""); err != nil {
				return fmt.Errorf("read-only %s: %w", target, err)
			}
		}
	}
	if spec.Root != "" {
		if err := syscall.Chroot(spec.Root); err != nil {
			return fmt.Errorf("chroot %s: %w", spec.Root, err)
		}
	}
	dir := spec.Dir
	if dir == "" {
		dir = "/"
	}
	if err := syscall.Chdir(dir); err != nil {
		return fmt.Errorf("chdir %s: %w", dir, err)
	}
	if spec.UID != nil {
		if err := syscall.Setgroups(spec.Groups); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
		if err := syscall.Setgid(spec.GID); err != nil {
			return fmt.Errorf("setgid: %w", err)
		}
		if err := syscall.Setuid(*spec.UID); err != nil {
			return fmt.Errorf("setuid: %w", err)
		}
	}
	// Changing credentials clears the parent-death signal: set it again, so
	// the container dies with the test process even when the test cannot
	// clean up (a go test -timeout panic).
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("prctl: %w", err)
	}
	if os.Getppid() == 1 {
		return errors.New("the test process is gone")
	}
	_ = os.Unsetenv(envShim)
	return syscall.Exec(spec.Path, spec.Args, spec.Env)
}

// mountPoint makes target exist with the kind (file or directory) of source.
func mountPoint(source, target string) error {
	fi, err := os.Stat(source)
	if err != nil {
		return fmt.Errorf("mount source: %w", err)
	}
	if fi.IsDir() {
		return os.MkdirAll(target, 0o755)
	}
	if _, err := os.Stat(target); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}
