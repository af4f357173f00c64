// Istio's sidecar injector for the tests, built by hack/build-istio-binaries.sh:
//
//	istio-injector render --route helm|istioctl --file FILE... [--set path=value]... --out DIR
//	istio-injector serve --dir DIR --kubeconfig FILE
//	istio-injector kube-inject ARGS...
//
// render renders the istiod chart shipped in the Istio module the way an install route
// does: `helm install istiod -f FILE...` (Helm values, merged in order; Istio's chart
// renderer, which is Helm's engine and value coalescing) or `istioctl install -f FILE...`
// (IstioOperators; istioctl's own manifest generation). It writes what istiod mounts from the rendered ConfigMaps
// (DIR/config, DIR/values, DIR/mesh) and every rendered object (DIR/objects.json).
//
// serve runs the injection webhook istiod runs (pkg/kube/inject.NewWebhook, file-watched
// config as istiod mounts it, nodes and namespaces read from the API server) over HTTPS
// on 127.0.0.1 with a throwaway certificate. istiod's environment (PLATFORM,
// ENABLE_NATIVE_SIDECARS, ...) is this process's environment. Once ready it prints one
// JSON line: {"url": ".../inject", "caBundle": "<base64 PEM>"}. It exits on SIGTERM or
// when stdin closes.
//
// kube-inject is `istioctl kube-inject` itself (e.g. offline, with --injectConfigFile
// DIR/config --meshConfigFile DIR/mesh --valuesFile DIR/values -f POD.yaml).
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/version"

	"istio.io/istio/istioctl/pkg/cli"
	"istio.io/istio/istioctl/pkg/kubeinject"
	"istio.io/istio/operator/pkg/helm"
	"istio.io/istio/operator/pkg/manifest"
	"istio.io/istio/operator/pkg/render"
	"istio.io/istio/operator/pkg/util/clog"
	"istio.io/istio/operator/pkg/values"
	"istio.io/istio/pilot/pkg/config/memory"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pkg/cluster"
	"istio.io/istio/pkg/config/mesh"
	"istio.io/istio/pkg/config/mesh/meshwatcher"
	"istio.io/istio/pkg/config/schema/collections"
	"istio.io/istio/pkg/kube"
	"istio.io/istio/pkg/kube/inject"
	"istio.io/istio/pkg/kube/krt"
	"istio.io/istio/pkg/kube/multicluster"
	"istio.io/istio/pkg/log"
)

type setFlags []string

func (s *setFlags) String() string     { return strings.Join(*s, ",") }
func (s *setFlags) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: istio-injector render|serve|kube-inject [flags]"))
	}
	// Istio logs to stdout by default; stdout is this program's answer.
	opts := log.DefaultOptions()
	opts.OutputPaths = []string{"stderr"}
	opts.ErrorOutputPaths = []string{"stderr"}
	if err := log.Configure(opts); err != nil {
		fail(err)
	}
	var err error
	switch os.Args[1] {
	case "render":
		err = renderCommand(os.Args[2:])
	case "serve":
		err = serveCommand(os.Args[2:])
	case "kube-inject":
		cmd := kubeinject.InjectCommand(cli.NewCLIContext(nil))
		cmd.SetArgs(os.Args[2:])
		err = cmd.Execute()
	default:
		err = fmt.Errorf("unknown command %q (want render, serve or kube-inject)", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "istio-injector:", err)
	os.Exit(1)
}

func renderCommand(args []string) error {
	fs := flag.NewFlagSet("render", flag.ContinueOnError)
	route := fs.String("route", "helm", "install route: helm (FILE = Helm values for the istiod chart) or istioctl (FILE = IstioOperator)")
	var files setFlags
	fs.Var(&files, "file", "values file (helm) or IstioOperator (istioctl); repeatable, later files win")
	kubeVersion := fs.String("kube-version", "v1.34.4", "Kubernetes version the chart is rendered for")
	out := fs.String("out", "", "output directory")
	var sets setFlags
	fs.Var(&sets, "set", "path=value on top of FILE (helm: a values path; istioctl: an IstioOperator path, e.g. values.global.platform=openshift)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(files) == 0 || *out == "" {
		return errors.New("render needs --file and --out")
	}
	var objects []manifest.Manifest
	switch *route {
	case "helm":
		userValues := values.Map{}
		for _, file := range files {
			text, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			fileValues, err := values.MapFromYaml(text)
			if err != nil {
				return fmt.Errorf("%s: %v", file, err)
			}
			userValues.MergeFrom(fileValues)
		}
		iop := values.MakeMap(map[string]any(userValues), "spec", "values")
		for _, s := range sets {
			if err := iop.SetSpecPaths("values." + s); err != nil {
				return fmt.Errorf("--set %s: %v", s, err)
			}
		}
		major, minor, err := splitVersion(*kubeVersion)
		if err != nil {
			return err
		}
		rendered, warnings, err := helm.Render("istiod", "istio-system", "istio-control/istio-discovery", iop,
			&version.Info{GitVersion: *kubeVersion, Major: major, Minor: minor})
		if err != nil {
			return err
		}
		for _, w := range warnings {
			fmt.Fprintln(os.Stderr, "chart warning:", w)
		}
		objects = rendered
	case "istioctl":
		manifestSets, _, err := render.GenerateManifest(files, sets, false, nil, clog.NewConsoleLogger(os.Stderr, os.Stderr, nil))
		if err != nil {
			return err
		}
		for _, set := range manifestSets {
			objects = append(objects, set.Manifests...)
		}
	default:
		return fmt.Errorf("unknown route %q (want helm or istioctl)", *route)
	}
	return writeRendered(objects, *out)
}

func splitVersion(v string) (string, string, error) {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return "", "", fmt.Errorf("--kube-version %q: expected vMAJOR.MINOR.PATCH", v)
	}
	return parts[0], parts[1], nil
}

// writeRendered writes the objects and, as istiod's Deployment mounts them, the injector's
// config and values (ConfigMap istio-sidecar-injector) and the mesh config (ConfigMap istio).
func writeRendered(objects []manifest.Manifest, out string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	all := make([]map[string]any, 0, len(objects))
	files := map[string]string{}
	for _, o := range objects {
		all = append(all, o.Object)
		if o.GetKind() != "ConfigMap" {
			continue
		}
		data := stringData(o.Object)
		switch o.GetName() {
		case "istio-sidecar-injector":
			files["config"], files["values"] = data["config"], data["values"]
		case "istio":
			files["mesh"] = data["mesh"]
		}
	}
	for _, name := range []string{"config", "values", "mesh"} {
		if files[name] == "" {
			return fmt.Errorf("the rendered manifests hold no %s (ConfigMap istio-sidecar-injector / istio missing)", name)
		}
		if err := os.WriteFile(filepath.Join(out, name), []byte(files[name]), 0o644); err != nil {
			return err
		}
	}
	encoded, err := json.MarshalIndent(all, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "objects.json"), encoded, 0o644)
}

// stringData is a ConfigMap's data.
func stringData(object map[string]any) map[string]string {
	result := map[string]string{}
	raw, _ := object["data"].(map[string]any)
	for k, v := range raw {
		if s, ok := v.(string); ok {
			result[k] = s
		}
	}
	return result
}

func serveCommand(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory written by render (config, values, mesh)")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig of the API server whose nodes and namespaces the injector reads")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *kubeconfig == "" {
		return errors.New("serve needs --dir and --kubeconfig")
	}
	meshText, err := os.ReadFile(filepath.Join(*dir, "mesh"))
	if err != nil {
		return err
	}
	meshConfig, err := mesh.ApplyMeshConfigDefaults(string(meshText))
	if err != nil {
		return fmt.Errorf("mesh config: %v", err)
	}
	stop := make(chan struct{})
	defer close(stop)

	// istiod's environment as far as injection reads it: the mesh config, and the
	// effective ProxyConfig (mesh defaultConfig, ProxyConfig resources: none here, and
	// the pod's proxy.istio.io/config annotation).
	env := model.NewEnvironment()
	env.Watcher = meshwatcher.ConfigAdapter(krt.NewStatic(&meshwatcher.MeshConfigResource{MeshConfig: meshConfig}, true))
	push := model.NewPushContext()
	push.ProxyConfigs = model.GetProxyConfigs(memory.Make(collections.Pilot), meshConfig)
	env.SetPushContext(push)

	client, err := kube.NewClient(kube.BuildClientCmd(*kubeconfig, ""), cluster.ID("Kubernetes"))
	if err != nil {
		return err
	}
	// As istiod: the cluster registry's informers for optional CRDs wait for those CRDs.
	client = kube.EnableCrdWatcher(client)
	clusters := multicluster.NewController(multicluster.ControllerOptions{
		Client:          client,
		ClusterID:       cluster.ID("Kubernetes"),
		SystemNamespace: "istio-system",
		MeshConfig:      env.Watcher,
	})
	watcher, err := inject.NewFileWatcher(filepath.Join(*dir, "config"), filepath.Join(*dir, "values"))
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	webhook, err := inject.NewWebhook(inject.WebhookParameters{Watcher: watcher, Env: env, Mux: mux, MultiCluster: clusters})
	if err != nil {
		return err
	}
	if err := clusters.Run(stop); err != nil {
		return err
	}
	webhook.Run(stop)
	if !client.RunAndWait(stop) {
		return errors.New("the API server informers did not sync")
	}

	certificate, caPEM, err := throwawayCertificate()
	if err != nil {
		return err
	}
	listener, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{certificate}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return err
	}
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- server.Serve(listener) }()

	ready, err := json.Marshal(map[string]string{
		"url":      fmt.Sprintf("https://%s/inject", listener.Addr().String()),
		"caBundle": base64.StdEncoding.EncodeToString(caPEM),
	})
	if err != nil {
		return err
	}
	fmt.Println(string(ready))

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	stdinClosed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()
	select {
	case <-signals:
	case <-stdinClosed:
	case err := <-served:
		return err
	}
	return server.Close()
}

// throwawayCertificate is a self-signed serving certificate for 127.0.0.1, valid for a
// day; its PEM is the caBundle the API server trusts for this webhook.
func throwawayCertificate() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "istio-injector.test"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caPEM, nil
}
