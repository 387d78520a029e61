// Command qs-controlplane runs a real Kubernetes control plane for tests: an embedded etcd
// and the real kube-apiserver (k8s.io/kubernetes/cmd/kube-apiserver/app), plus the garbage
// collector and namespace controllers, all in one process on 127.0.0.1.
//
// It writes kubeconfigs for an admin and for test identities into a state directory, a
// state.json describing the cluster, and a `ready` marker once /readyz answers ok.
// SIGINT/SIGTERM stops everything and removes the state (unless --keep).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // as in cmd/kube-apiserver
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // as in cmd/kube-apiserver
	_ "k8s.io/component-base/metrics/prometheus/version"  // as in cmd/kube-apiserver
	"k8s.io/component-base/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

const usage = `qs-controlplane — a real Kubernetes control plane (etcd + kube-apiserver + garbage collector) for tests.

Usage:
  qs-controlplane [run] [flags]     start the control plane (foreground; stop with Ctrl-C / SIGTERM)
  qs-controlplane version           print the Kubernetes version it embeds

Flags of run:
`

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

type options struct {
	dir           string
	keep          bool
	apiserverPort int
	etcdPort      int
	users         multiFlag
	apiserverArgs multiFlag
	noControllers bool
	readyTimeout  time.Duration
	stopTimeout   time.Duration
	etcdLogLevel  string
}

// state is written to <dir>/state.json once the control plane is ready.
type state struct {
	KubernetesVersion string            `json:"kubernetesVersion"`
	PID               int               `json:"pid"`
	Dir               string            `json:"dir"`
	APIServerURL      string            `json:"apiserverURL"`
	EtcdURL           string            `json:"etcdURL"`
	CAFile            string            `json:"caFile"`
	AdminKubeconfig   string            `json:"adminKubeconfig"`
	Kubeconfigs       map[string]string `json:"kubeconfigs"`
	Identities        []identity        `json:"identities"`
	Controllers       []string          `json:"controllers"`
	StartedAt         time.Time         `json:"startedAt"`
	ReadySeconds      float64           `json:"readySeconds"`
}

func main() {
	args := os.Args[1:]
	if len(args) > 0 {
		switch args[0] {
		case "run":
			args = args[1:]
		case "version", "--version":
			fmt.Println(version.Get().GitVersion)
			return
		case "apiserver":
			// Undocumented escape hatch: the plain kube-apiserver command.
			os.Args = append([]string{"kube-apiserver"}, args[1:]...)
			os.Exit(cli.Run(app.NewAPIServerCommand()))
		}
	}
	os.Exit(run(args))
}

func run(args []string) int {
	var o options
	fs := flag.NewFlagSet("qs-controlplane", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage); fs.PrintDefaults() }
	fs.StringVar(&o.dir, "dir", "", "state directory for kubeconfigs, certificates, etcd data, state.json, ready marker (default: a new temp dir)")
	fs.BoolVar(&o.keep, "keep", false, "keep etcd data, certificates and kubeconfigs in --dir on exit")
	fs.IntVar(&o.apiserverPort, "apiserver-port", 0, "kube-apiserver secure port on 127.0.0.1 (0: pick a free port)")
	fs.IntVar(&o.etcdPort, "etcd-port", 0, "etcd client port on 127.0.0.1 (0: pick a free port; the peer port is always picked)")
	fs.Var(&o.users, "user", "extra identity `[ALIAS=]NAME[:group1,group2]` (repeatable); writes ALIAS.kubeconfig; for system:serviceaccount:NS:SA the SA groups are added")
	fs.Var(&o.apiserverArgs, "apiserver-arg", "extra kube-apiserver flag `--name=value` (repeatable; overrides the defaults)")
	fs.BoolVar(&o.noControllers, "no-controllers", false, "do not run the garbage collector and namespace controllers")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", 3*time.Minute, "give up when the API server is not ready within this time")
	fs.DurationVar(&o.stopTimeout, "stop-timeout", 30*time.Second, "on SIGTERM, wait this long for the API server to stop before closing etcd")
	fs.StringVar(&o.etcdLogLevel, "etcd-log-level", "warn", "etcd log level (debug, info, warn, error)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "qs-controlplane: unexpected argument %q (see --help)\n", fs.Arg(0))
		return 2
	}
	if err := start(o); err != nil {
		fmt.Fprintf(os.Stderr, "qs-controlplane: error: %v\n", err)
		return 1
	}
	return 0
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "qs-controlplane: "+format+"\n", a...)
}

func start(o options) (retErr error) {
	startedAt := time.Now()

	// ---- identities (validated before anything is created) ----
	ids := []identity{
		{Alias: "operator", User: "system:serviceaccount:quotestream-system:quotestream-operator",
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:quotestream-system", "system:authenticated"}},
		{Alias: "nobody", User: "nobody", Groups: []string{"system:authenticated"}},
	}
	for _, spec := range o.users {
		id, err := parseUserSpec(spec)
		if err != nil {
			return err
		}
		for _, other := range ids {
			if other.Alias == id.Alias {
				return fmt.Errorf("--user %q: alias %q is already used (give one: ALIAS=NAME)", spec, id.Alias)
			}
		}
		ids = append(ids, id)
	}
	for i := range ids {
		ids[i].Token = randomToken()
	}

	// ---- state directory ----
	ownDir := false
	if o.dir == "" {
		d, err := os.MkdirTemp("", "qs-controlplane-")
		if err != nil {
			return fmt.Errorf("cannot create a temp dir: %w", err)
		}
		o.dir, ownDir = d, true
	}
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("state dir %s cannot be created: %w", dir, err)
	}
	if err := checkWritable(dir); err != nil {
		return fmt.Errorf("state dir %s is not writable: %w", dir, err)
	}
	if pid := runningPID(dir); pid > 0 {
		return fmt.Errorf("a control plane (pid %d) is already running with state dir %s; stop it first (kill %d or cluster-down.sh)", pid, dir, pid)
	}
	// Leftovers of a previous run that was killed hard.
	for _, f := range []string{"ready", "state.json", "etcd", "pki"} {
		_ = os.RemoveAll(filepath.Join(dir, f))
	}
	created := []string{"ready", "state.json", "etcd", "pki", "admin.kubeconfig"}
	for _, id := range ids {
		created = append(created, id.Alias+".kubeconfig")
	}
	defer func() {
		switch {
		case o.keep:
			logf("--keep: state left in %s", dir)
		case ownDir:
			_ = os.RemoveAll(dir)
		default:
			for _, f := range created {
				_ = os.RemoveAll(filepath.Join(dir, f))
			}
		}
		if retErr == nil {
			logf("stopped")
		}
	}()

	// ---- ports ----
	apiPort, err := pickPort(o.apiserverPort, "--apiserver-port")
	if err != nil {
		return err
	}
	etcdPort, err := pickPort(o.etcdPort, "--etcd-port")
	if err != nil {
		return err
	}
	peerPort, err := pickPort(0, "etcd peer port")
	if err != nil {
		return err
	}
	if apiPort == etcdPort || apiPort == peerPort || etcdPort == peerPort {
		return fmt.Errorf("port clash: apiserver %d, etcd %d, etcd peer %d", apiPort, etcdPort, peerPort)
	}
	apiURL := "https://127.0.0.1:" + strconv.Itoa(apiPort)
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdPort)

	// ---- certificates, tokens, kubeconfigs ----
	p, err := newPKI(filepath.Join(dir, "pki"))
	if err != nil {
		return fmt.Errorf("generating certificates: %w", err)
	}
	tokenFile := filepath.Join(p.dir, "tokens.csv")
	if err := writeTokenFile(tokenFile, ids); err != nil {
		return err
	}
	adminKubeconfig := filepath.Join(dir, "admin.kubeconfig")
	if err := writeKubeconfig(adminKubeconfig, kubeconfig(apiURL, p.caPEM, "admin",
		&clientcmdapi.AuthInfo{ClientCertificateData: p.adminCertPEM, ClientKeyData: p.adminKeyPEM})); err != nil {
		return err
	}
	if err := writeIdentityKubeconfigs(dir, apiURL, p.caPEM, ids); err != nil {
		return err
	}

	// Signals: kube-apiserver installs its own handler too (genericapiserver.SetupSignalContext);
	// both see the same signal, the API server drains, then we close etcd.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// ---- etcd ----
	logf("starting etcd on %s", etcdURL)
	cfg := embed.NewConfig()
	cfg.Name = "qs-etcd"
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = o.etcdLogLevel
	etcdLog, err := etcdLogger(o.etcdLogLevel)
	if err != nil {
		return fmt.Errorf("--etcd-log-level: %w", err)
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(etcdLog)
	lc, _ := url.Parse(etcdURL)
	lp, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(peerPort))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*lc}, []url.URL{*lc}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*lp}, []url.URL{*lp}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	etcd, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer func() {
		etcd.Close()
		logf("etcd stopped")
	}()
	select {
	case <-etcd.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		return errors.New("etcd did not become ready within 60s")
	case <-ctx.Done():
		return errors.New("interrupted while starting etcd")
	}

	// ---- kube-apiserver ----
	apiArgs := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--cert-dir=" + p.dir,
		"--tls-cert-file=" + p.ServingCert,
		"--tls-private-key-file=" + p.ServingKey,
		"--client-ca-file=" + p.CAFile,
		"--token-auth-file=" + tokenFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p.SAPub,
		"--service-account-signing-key-file=" + p.SAKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--allow-privileged=true",
		"--disable-admission-plugins=ServiceAccount",
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}
	apiArgs = mergeArgs(apiArgs, o.apiserverArgs)
	logf("starting kube-apiserver %s on %s", version.Get().GitVersion, apiURL)
	cmd := app.NewAPIServerCommand()
	cmd.SetArgs(apiArgs)
	apiDone := make(chan error, 1)
	go func() { apiDone <- cmd.Execute() }()

	adminCfg := &rest.Config{
		Host: apiURL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: p.caPEM, CertData: p.adminCertPEM, KeyData: p.adminKeyPEM,
		},
	}
	if err := waitReady(ctx, adminCfg, o.readyTimeout, apiDone); err != nil {
		return err
	}

	controllers := []string{}
	ctrlCtx, cancelCtrl := context.WithCancel(ctx)
	defer cancelCtrl()
	if !o.noControllers {
		if err := startControllers(ctrlCtx, adminCfg); err != nil {
			return fmt.Errorf("starting controllers: %w", err)
		}
		controllers = []string{"garbage-collector", "namespace"}
	}

	// ---- state ----
	readySeconds := time.Since(startedAt).Seconds()
	st := state{
		KubernetesVersion: version.Get().GitVersion,
		PID:               os.Getpid(),
		Dir:               dir,
		APIServerURL:      apiURL,
		EtcdURL:           etcdURL,
		CAFile:            p.CAFile,
		AdminKubeconfig:   adminKubeconfig,
		Kubeconfigs:       map[string]string{"admin": adminKubeconfig},
		Identities:        ids,
		Controllers:       controllers,
		StartedAt:         startedAt.UTC(),
		ReadySeconds:      float64(int(readySeconds*100)) / 100,
	}
	for _, id := range ids {
		st.Kubeconfigs[id.Alias] = id.Kubeconfig
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := writeFileAtomic(filepath.Join(dir, "state.json"), append(b, '\n'), 0o600); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, "ready"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	printSummary(st)

	// ---- run until signalled or a component dies ----
	select {
	case <-ctx.Done():
		logf("signal received, stopping")
		_ = os.Remove(filepath.Join(dir, "ready"))
		cancelCtrl()
		select {
		case err := <-apiDone:
			if err != nil {
				logf("kube-apiserver exited: %v", err)
			}
		case <-time.After(o.stopTimeout):
			logf("kube-apiserver did not stop within %s; closing etcd anyway", o.stopTimeout)
		}
		return nil
	case err := <-apiDone:
		_ = os.Remove(filepath.Join(dir, "ready"))
		return fmt.Errorf("kube-apiserver exited unexpectedly: %v", err)
	case err := <-etcd.Err():
		_ = os.Remove(filepath.Join(dir, "ready"))
		return fmt.Errorf("etcd failed: %v", err)
	}
}

// waitReady polls /readyz with the admin identity until it answers 200 "ok".
func waitReady(ctx context.Context, cfg *rest.Config, timeout time.Duration, apiDone <-chan error) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cfg.CAData)
	cert, err := tls.X509KeyPair(cfg.CertData, cfg.KeyData)
	if err != nil {
		return err
	}
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}},
	}
	deadline := time.Now().Add(timeout)
	last := "no answer yet"
	for {
		resp, err := client.Get(cfg.Host + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "ok" {
				return nil
			}
			last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, failedChecks(string(body)))
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not ready within %s; last /readyz: %s", timeout, last)
		}
		select {
		case err := <-apiDone:
			return fmt.Errorf("kube-apiserver exited before it was ready: %v", err)
		case <-ctx.Done():
			return errors.New("interrupted while waiting for kube-apiserver")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func failedChecks(body string) string {
	var bad []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "[-]") {
			bad = append(bad, strings.TrimPrefix(l, "[-]"))
		}
	}
	if len(bad) == 0 {
		return strings.TrimSpace(body)
	}
	return strings.Join(bad, "; ")
}

// mergeArgs appends extra --name=value flags, replacing defaults with the same name.
func mergeArgs(defaults, extra []string) []string {
	name := func(a string) string { n, _, _ := strings.Cut(a, "="); return n }
	override := map[string]bool{}
	for _, e := range extra {
		override[name(e)] = true
	}
	var out []string
	for _, d := range defaults {
		if !override[name(d)] {
			out = append(out, d)
		}
	}
	return append(out, extra...)
}

// pickPort checks that a requested port is free, or picks a free one when port is 0.
func pickPort(port int, what string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		if port != 0 {
			return 0, fmt.Errorf("%s %d on 127.0.0.1 is not available (in use?): %v", what, port, err)
		}
		return 0, fmt.Errorf("cannot pick a free port for %s: %v", what, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".write-test-")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// runningPID returns the pid recorded in dir/state.json when that process is still alive.
func runningPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return 0
	}
	var st state
	if json.Unmarshal(b, &st) != nil || st.PID <= 0 || st.PID == os.Getpid() {
		return 0
	}
	if err := syscall.Kill(st.PID, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return 0
	}
	// A recycled pid is possible; only trust it when it is a qs-controlplane.
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", st.PID)); err == nil &&
		!strings.Contains(string(cmdline), "qs-controlplane") {
		return 0
	}
	return st.PID
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func printSummary(st state) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nqs-controlplane: Kubernetes %s control plane ready in %.1fs (pid %d)\n", st.KubernetesVersion, st.ReadySeconds, st.PID)
	fmt.Fprintf(&b, "  API server   %s\n", st.APIServerURL)
	fmt.Fprintf(&b, "  etcd         %s\n", st.EtcdURL)
	ctrl := "none"
	if len(st.Controllers) > 0 {
		ctrl = strings.Join(st.Controllers, ", ")
	}
	fmt.Fprintf(&b, "  controllers  %s\n", ctrl)
	fmt.Fprintf(&b, "  state        %s/state.json\n", st.Dir)
	fmt.Fprintf(&b, "  kubeconfigs:\n    %-10s %s  (cluster-admin, group system:masters)\n", "admin", st.AdminKubeconfig)
	for _, id := range st.Identities {
		fmt.Fprintf(&b, "    %-10s %s  (user %s; groups %s)\n", id.Alias, id.Kubeconfig, id.User, strings.Join(id.Groups, ","))
	}
	fmt.Fprintf(&b, "\n  export KUBECONFIG=%s\n\nready\n", st.AdminKubeconfig)
	fmt.Print(b.String())
}
