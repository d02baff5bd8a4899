// Command kindcheck decodes everything in a kind config that kind itself never checks
// before it has a running node: the kubeadmConfigPatches and the audit policy.
//
// Why this exists: `kind create cluster` strictly decodes the v1alpha4 Cluster (see
// sigs.k8s.io/kind pkg/internal/apis/config/encoding) and validates it, but it applies
// kubeadmConfigPatches only later, as JSON merge patches inside the node container,
// matching them to kubeadm's documents by kind/apiVersion and silently dropping a patch
// that matches nothing. kube-proxy and kube-apiserver then fall back to lenient
// decoding, so a misspelled field only logs a warning and the setting quietly stays at
// its default. This program decodes each patch strictly into the real upstream types
// of the pinned Kubernetes release and runs the upstream validation, so such a mistake
// fails here instead.
//
// It is not built from this directory: bench/build/kindconfig.py copies this file into a
// generated Go module under the hopbench cache (requiring the pinned k8s.io/kubernetes,
// sigs.k8s.io/kind and their staging modules) and builds it there.
//
// Usage: kindcheck -audit-policy audit-policy.yaml CONFIG.yaml...
// Prints one JSON object per config file; exits 1 if any config has errors.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
	yamlv3 "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit"
	auditpolicy "k8s.io/apiserver/pkg/audit/policy"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	apiserveroptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	kubeadmv1beta3 "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta3"
	proxyconfig "k8s.io/kubernetes/pkg/proxy/apis/config"
	proxyscheme "k8s.io/kubernetes/pkg/proxy/apis/config/scheme"
	proxyvalidation "k8s.io/kubernetes/pkg/proxy/apis/config/validation"
	kindv1alpha4 "sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"
)

// The documents kind v0.31 generates for Kubernetes >= 1.23 (ConfigTemplateBetaV3 in
// sigs.k8s.io/kind pkg/cluster/internal/kubeadm/config.go). A patch must match one.
var kindDocuments = map[string]string{
	"ClusterConfiguration":   "kubeadm.k8s.io/v1beta3",
	"InitConfiguration":      "kubeadm.k8s.io/v1beta3",
	"JoinConfiguration":      "kubeadm.k8s.io/v1beta3",
	"KubeletConfiguration":   "kubelet.config.k8s.io/v1beta1",
	"KubeProxyConfiguration": "kubeproxy.config.k8s.io/v1alpha1",
}

type result struct {
	File    string   `json:"file"`
	Checked []string `json:"checked"`
	Errors  []string `json:"errors"`
}

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

func main() {
	policyPath := flag.String("audit-policy", "", "audit policy file the configs mount")
	flag.Parse()
	failed := false
	if *policyPath != "" {
		r := result{File: *policyPath, Checked: []string{}, Errors: []string{}}
		r.add("audit.k8s.io/v1 Policy", checkAuditPolicy(*policyPath))
		failed = emit(r) || failed
	}
	for _, path := range flag.Args() {
		failed = emit(checkConfig(path)) || failed
	}
	if failed {
		os.Exit(1)
	}
}

func emit(r result) bool {
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
	return len(r.Errors) > 0
}

func (r *result) add(what string, err error) {
	if err != nil {
		r.Errors = append(r.Errors, fmt.Sprintf("%s: %v", what, err))
		return
	}
	r.Checked = append(r.Checked, what)
}

// checkConfig decodes the Cluster the way kind does, then every patch it carries.
func checkConfig(path string) result {
	r := result{File: path, Checked: []string{}, Errors: []string{}}
	raw, err := os.ReadFile(path)
	if err != nil {
		r.add("read", err)
		return r
	}
	cluster := &kindv1alpha4.Cluster{}
	dec := yamlv3.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true) // exactly kind's yamlUnmarshalStrict
	if err := dec.Decode(cluster); err != nil {
		r.add("kind.x-k8s.io/v1alpha4 Cluster", err)
		return r
	}
	r.add("kind.x-k8s.io/v1alpha4 Cluster", nil)
	mode := string(cluster.Networking.KubeProxyMode)
	if mode == "" {
		mode = "iptables" // kind's default (v1alpha4 SetDefaultsCluster)
	}
	for i, p := range cluster.KubeadmConfigPatches {
		what, err := checkPatch(p, mode)
		r.add(fmt.Sprintf("kubeadmConfigPatches[%d] %s", i, what), err)
	}
	for n, node := range cluster.Nodes {
		for i, p := range node.KubeadmConfigPatches {
			what, err := checkPatch(p, mode)
			r.add(fmt.Sprintf("nodes[%d].kubeadmConfigPatches[%d] %s", n, i, what), err)
		}
	}
	return r
}

func checkPatch(patch, mode string) (string, error) {
	tm := typeMeta{}
	if err := yaml.Unmarshal([]byte(patch), &tm); err != nil {
		return "?", err
	}
	what := strings.TrimSpace(tm.APIVersion + " " + tm.Kind)
	want, known := kindDocuments[tm.Kind]
	switch {
	case !known:
		return what, fmt.Errorf("kind %q matches no document kind generates, so kind would drop the patch", tm.Kind)
	case tm.APIVersion != want:
		return what, fmt.Errorf("apiVersion %q: kind generates %s %s, so kind would drop the patch", tm.APIVersion, want, tm.Kind)
	}
	switch tm.Kind {
	case "ClusterConfiguration":
		return what, checkClusterConfiguration(patch)
	case "InitConfiguration":
		return what, yaml.UnmarshalStrict([]byte(patch), &kubeadmv1beta3.InitConfiguration{})
	case "JoinConfiguration":
		return what, yaml.UnmarshalStrict([]byte(patch), &kubeadmv1beta3.JoinConfiguration{})
	case "KubeletConfiguration":
		return what, yaml.UnmarshalStrict([]byte(patch), &kubeletv1beta1.KubeletConfiguration{})
	default:
		return what, checkKubeProxy(patch, mode)
	}
}

// checkClusterConfiguration: strict kubeadm v1beta3 fields, then every apiServer
// extraArg must be a real kube-apiserver flag whose value parses.
func checkClusterConfiguration(patch string) error {
	cc := &kubeadmv1beta3.ClusterConfiguration{}
	if err := yaml.UnmarshalStrict([]byte(patch), cc); err != nil {
		return err
	}
	if len(cc.ControllerManager.ExtraArgs)+len(cc.Scheduler.ExtraArgs) > 0 ||
		(cc.Etcd.Local != nil && len(cc.Etcd.Local.ExtraArgs) > 0) {
		return fmt.Errorf("extraArgs of components other than apiServer are not checked; extend kindcheck")
	}
	flags := apiserveroptions.NewServerRunOptions().Flags()
	for name, value := range cc.APIServer.ExtraArgs {
		found := false
		for _, fs := range flags.FlagSets {
			if f := fs.Lookup(name); f != nil {
				found = true
				if err := fs.Set(name, value); err != nil {
					return fmt.Errorf("apiServer.extraArgs[%s]=%q: %v", name, value, err)
				}
			}
		}
		if !found {
			return fmt.Errorf("apiServer.extraArgs: kube-apiserver has no flag --%s", name)
		}
	}
	for _, v := range cc.APIServer.ExtraVolumes {
		if v.Name == "" || v.HostPath == "" || v.MountPath == "" {
			return fmt.Errorf("apiServer.extraVolumes %+v: name, hostPath and mountPath are required", v)
		}
		if !validPathType(v.PathType) {
			return fmt.Errorf("apiServer.extraVolumes %s: unknown pathType %q", v.Name, v.PathType)
		}
	}
	return nil
}

func validPathType(t corev1.HostPathType) bool {
	switch t {
	case corev1.HostPathUnset, corev1.HostPathDirectoryOrCreate, corev1.HostPathDirectory,
		corev1.HostPathFileOrCreate, corev1.HostPathFile, corev1.HostPathSocket,
		corev1.HostPathCharDev, corev1.HostPathBlockDev:
		return true
	}
	return false
}

// checkKubeProxy applies the patch to the document kind generates (a JSON merge patch,
// as kind does), then loads the result with kube-proxy's own strict codec (defaulting,
// conversion) and runs kube-proxy's validation on it. It does so for every proxy mode,
// not only the config's: a live cluster can be switched (hopbench set-proxy-mode), and
// kube-proxy validates a mode's section only when it runs in that mode.
func checkKubeProxy(patch, mode string) error {
	patchJSON, err := yaml.YAMLToJSON([]byte(patch))
	if err != nil {
		return err
	}
	for _, m := range []string{mode, "iptables", "ipvs", "nftables"} {
		base := fmt.Sprintf(`{"apiVersion":"kubeproxy.config.k8s.io/v1alpha1",`+
			`"kind":"KubeProxyConfiguration","mode":%q,"iptables":{"minSyncPeriod":"1s"},`+
			`"conntrack":{"maxPerCore":0}}`, m)
		merged, err := jsonpatch.MergePatch([]byte(base), patchJSON)
		if err != nil {
			return err
		}
		obj, _, err := proxyscheme.Codecs.UniversalDecoder().Decode(merged, nil, nil)
		if err != nil {
			return err
		}
		cfg, ok := obj.(*proxyconfig.KubeProxyConfiguration)
		if !ok {
			return fmt.Errorf("decoded %T, not a KubeProxyConfiguration", obj)
		}
		if errs := proxyvalidation.Validate(cfg); len(errs) > 0 {
			return fmt.Errorf("in mode %s: %v", m, errs.ToAggregate())
		}
	}
	return nil
}

// checkAuditPolicy: strict decode (kube-apiserver itself falls back to lenient
// decoding), then the apiserver's own loader, which validates the policy.
func checkAuditPolicy(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	strict := serializer.NewCodecFactory(audit.Scheme, serializer.EnableStrict).UniversalDecoder()
	if _, _, err := strict.Decode(raw, nil, &auditinternal.Policy{}); err != nil {
		return err
	}
	_, err = auditpolicy.LoadPolicyFromBytes(raw)
	return err
}
