// scc-admission serves OpenShift's own SecurityContextConstraints admission plugin
// (github.com/openshift/apiserver-library-go/pkg/securitycontextconstraints/sccadmission) as
// admission webhooks in front of the local kube-apiserver, so our pods meet the admission they
// meet inside OpenShift: /mutate runs Admit (choose an SCC, assign UIDs, SELinux and groups),
// /validate runs Validate (OpenShift's final check after every mutation).
//
// The plugin's `use` checks become SubjectAccessReviews against the apiserver, so RBAC decides;
// its audit annotations (the SCC chosen, those denied or too restrictive) come back as
// admission warnings. It also gives every namespace the openshift.io/sa.scc.* annotations the
// plugin needs, as OpenShift's cluster-policy-controller does (see namespaces.go).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/api/legacyscheme"
	coreapi "k8s.io/kubernetes/pkg/apis/core"
	_ "k8s.io/kubernetes/pkg/apis/core/install" // v1 <-> internal Pod conversions in legacyscheme

	securityclient "github.com/openshift/client-go/security/clientset/versioned"
	securityinformers "github.com/openshift/client-go/security/informers/externalversions"

	"github.com/openshift/apiserver-library-go/pkg/securitycontextconstraints/sccadmission"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of an identity that may create SubjectAccessReviews and update namespaces")
	listen := flag.String("listen", "127.0.0.1:8443", "address the webhooks serve TLS on")
	certFile := flag.String("tls-cert-file", "", "serving certificate (signed by the CA in the webhook configurations)")
	keyFile := flag.String("tls-key-file", "", "serving key")
	readyFile := flag.String("ready-file", "", "written once the caches are synced and the listener is bound")
	sarTTL := flag.Duration("sar-cache-ttl", 5*time.Second, "how long a SubjectAccessReview answer is reused")
	klog.InitFlags(nil)
	flag.Parse()
	if *kubeconfig == "" || *certFile == "" || *keyFile == "" {
		klog.Exit("--kubeconfig, --tls-cert-file and --tls-key-file are required")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.Exitf("kubeconfig %s: %v", *kubeconfig, err)
	}
	// One admission asks a few dozen SubjectAccessReviews: client-go's default 5 QPS would queue them.
	cfg.QPS, cfg.Burst = 200, 400
	kube := kubernetes.NewForConfigOrDie(cfg)
	kubeInformers := informers.NewSharedInformerFactory(kube, 0)
	securityInformers := securityinformers.NewSharedInformerFactory(securityclient.NewForConfigOrDie(cfg), 0)

	plugin := sccadmission.NewConstraint()
	plugin.SetExternalKubeInformerFactory(kubeInformers)
	plugin.SetSecurityInformers(securityInformers.Security().V1().SecurityContextConstraints())
	plugin.SetAuthorizer(newSARAuthorizer(kube.AuthorizationV1().SubjectAccessReviews(), *sarTTL))
	if err := plugin.ValidateInitialization(); err != nil {
		klog.Exit(err)
	}
	allocator := newNamespaceAllocator(kube, kubeInformers.Core().V1().Namespaces())

	kubeInformers.Start(ctx.Done())
	securityInformers.Start(ctx.Done())
	for name, synced := range map[string]cache.InformerSynced{
		"namespaces":                 kubeInformers.Core().V1().Namespaces().Informer().HasSynced,
		"securitycontextconstraints": securityInformers.Security().V1().SecurityContextConstraints().Informer().HasSynced,
	} {
		if !cache.WaitForNamedCacheSync(name, ctx.Done(), synced) {
			klog.Exitf("the %s cache did not sync", name)
		}
	}
	go allocator.run(ctx)

	mux := http.NewServeMux()
	mux.Handle("/mutate", reviewHandler(func(ctx context.Context, a admission.Attributes) error { return plugin.Admit(ctx, a, nil) }, true))
	mux.Handle("/validate", reviewHandler(func(ctx context.Context, a admission.Attributes) error { return plugin.Validate(ctx, a, nil) }, false))
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		klog.Exitf("listen on %s: %v", *listen, err)
	}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = server.Shutdown(shutdown)
	}()
	if *readyFile != "" {
		if err := os.WriteFile(*readyFile, []byte(listener.Addr().String()+"\n"), 0o644); err != nil {
			klog.Exitf("ready file %s: %v", *readyFile, err)
		}
	}
	klog.Infof("serving OpenShift SCC admission on https://%s (/mutate, /validate)", listener.Addr())
	if err := server.ServeTLS(listener, *certFile, *keyFile); !errors.Is(err, http.ErrServerClosed) {
		klog.Exit(err)
	}
}

// reviewHandler answers one AdmissionReview with the plugin's Admit or Validate.
func reviewHandler(run func(context.Context, admission.Attributes) error, mutate bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started := time.Now()
		var review admissionv1.AdmissionReview
		body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		if err == nil {
			err = json.Unmarshal(body, &review)
		}
		if err != nil || review.Request == nil {
			http.Error(w, fmt.Sprintf("not an AdmissionReview: %v", err), http.StatusBadRequest)
			return
		}
		request := review.Request
		response := answer(r.Context(), request, run, mutate)
		response.UID = request.UID
		klog.Infof("%s %s %s/%s by %s: allowed=%t in %s", r.URL.Path, request.Operation, request.Namespace, podName(request),
			request.UserInfo.Username, response.Allowed, time.Since(started).Round(time.Millisecond))
		review.Request, review.Response = nil, response
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&review)
	})
}

func answer(ctx context.Context, request *admissionv1.AdmissionRequest, run func(context.Context, admission.Attributes) error, mutate bool) *admissionv1.AdmissionResponse {
	attributes, err := toAttributes(request)
	if err != nil {
		return refuse(apierrors.NewBadRequest(err.Error()), nil)
	}
	err = run(ctx, attributes)
	warnings := attributes.warnings()
	if err != nil {
		return refuse(err, warnings)
	}
	response := &admissionv1.AdmissionResponse{Allowed: true, Warnings: warnings}
	if !mutate || request.Object.Raw == nil {
		return response
	}
	pod, ok := attributes.GetObject().(*coreapi.Pod)
	if !ok {
		return response
	}
	patch, err := podPatch(request.Object.Raw, pod)
	if err != nil {
		return refuse(apierrors.NewInternalError(err), warnings)
	}
	if len(patch) > 0 {
		raw, err := json.Marshal(patch)
		if err != nil {
			return refuse(apierrors.NewInternalError(err), warnings)
		}
		patchType := admissionv1.PatchTypeJSONPatch
		response.Patch, response.PatchType = raw, &patchType
	}
	return response
}

func refuse(err error, warnings []string) *admissionv1.AdmissionResponse {
	status := metav1.Status{Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden, Message: err.Error()}
	var apiStatus apierrors.APIStatus
	if errors.As(err, &apiStatus) {
		status = apiStatus.Status()
	}
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &status, Warnings: warnings}
}

func podName(request *admissionv1.AdmissionRequest) string {
	if request.Name != "" {
		return request.Name
	}
	var pod metav1.PartialObjectMetadata
	if json.Unmarshal(request.Object.Raw, &pod) == nil && pod.GenerateName != "" {
		return pod.GenerateName + "*"
	}
	return "?"
}

// reviewAttributes is the request as the plugin sees it inside an apiserver, keeping the audit
// annotations it adds so they can be returned as warnings.
type reviewAttributes struct {
	admission.Attributes
	annotations map[string]string
}

func (a *reviewAttributes) AddAnnotation(key, value string) error {
	a.annotations[key] = value
	return nil
}

func (a *reviewAttributes) AddAnnotationWithLevel(key, value string, _ auditinternal.Level) error {
	return a.AddAnnotation(key, value)
}

// warnings: "key: value" per non-empty annotation, sorted so equal answers read the same.
func (a *reviewAttributes) warnings() []string {
	var out []string
	for key, value := range a.annotations {
		if value != "" {
			out = append(out, key+": "+value)
		}
	}
	sort.Strings(out)
	return out
}

func toAttributes(request *admissionv1.AdmissionRequest) (*reviewAttributes, error) {
	object, err := internalObject(request.Object.Raw)
	if err != nil {
		return nil, fmt.Errorf("object: %w", err)
	}
	oldObject, err := internalObject(request.OldObject.Raw)
	if err != nil {
		return nil, fmt.Errorf("oldObject: %w", err)
	}
	info := &user.DefaultInfo{Name: request.UserInfo.Username, UID: request.UserInfo.UID, Groups: request.UserInfo.Groups}
	if len(request.UserInfo.Extra) > 0 {
		info.Extra = map[string][]string{}
		for key, values := range request.UserInfo.Extra {
			info.Extra[key] = values
		}
	}
	kind := schema.GroupVersionKind{Group: request.Kind.Group, Version: request.Kind.Version, Kind: request.Kind.Kind}
	resource := schema.GroupVersionResource{Group: request.Resource.Group, Version: request.Resource.Version, Resource: request.Resource.Resource}
	dryRun := request.DryRun != nil && *request.DryRun
	record := admission.NewAttributesRecord(object, oldObject, kind, request.Namespace, request.Name, resource, request.SubResource,
		admission.Operation(request.Operation), nil, dryRun, info)
	return &reviewAttributes{Attributes: record, annotations: map[string]string{}}, nil
}

// internalObject converts a v1 Pod to the internal type the plugin works on (nil when absent).
func internalObject(raw []byte) (runtime.Object, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var external corev1.Pod
	if err := json.Unmarshal(raw, &external); err != nil {
		return nil, err
	}
	var internal coreapi.Pod
	if err := legacyscheme.Scheme.Convert(&external, &internal, nil); err != nil {
		return nil, err
	}
	return &internal, nil
}

// podPatch is the JSON patch from the pod the apiserver sent to the one the plugin admitted.
func podPatch(original []byte, admitted *coreapi.Pod) ([]patchOperation, error) {
	var external corev1.Pod
	if err := legacyscheme.Scheme.Convert(admitted, &external, nil); err != nil {
		return nil, err
	}
	external.APIVersion, external.Kind = "v1", "Pod"
	after, err := json.Marshal(&external)
	if err != nil {
		return nil, err
	}
	var from, to any
	if err := json.Unmarshal(original, &from); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(after, &to); err != nil {
		return nil, err
	}
	return jsonDiff("", from, to), nil
}
