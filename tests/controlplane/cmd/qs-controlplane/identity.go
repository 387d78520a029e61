package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const serviceAccountPrefix = "system:serviceaccount:"
const nodePrefix = "system:node:"

// identity is a test user authenticated by a static bearer token (--token-auth-file).
type identity struct {
	Alias      string   `json:"alias"` // kubeconfig is <alias>.kubeconfig
	User       string   `json:"user"`
	Groups     []string `json:"groups"`
	Token      string   `json:"token"`
	Kubeconfig string   `json:"kubeconfig"`
}

var aliasRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]*$`)

// parseUserSpec parses `[ALIAS=]NAME[:group1,group2]`.
//
// Service-account names contain colons themselves: for NAME of the form
// system:serviceaccount:NS:SA the first four colon-separated parts are the name, anything
// after the fourth colon is the group list, and the groups Kubernetes gives a service
// account (system:serviceaccounts, system:serviceaccounts:NS) are added automatically.
// The default alias is NAME (or sa-NS-SA) with unsafe characters replaced by '-'.
func parseUserSpec(spec string) (identity, error) {
	var id identity
	rest := spec
	if i := strings.Index(rest, "="); i >= 0 && !strings.Contains(rest[:i], ":") {
		id.Alias, rest = rest[:i], rest[i+1:]
	}
	var groups string
	if strings.HasPrefix(rest, serviceAccountPrefix) {
		parts := strings.SplitN(rest, ":", 5)
		if len(parts) < 4 || parts[2] == "" || parts[3] == "" {
			return id, fmt.Errorf("--user %q: service account must be system:serviceaccount:NAMESPACE:NAME", spec)
		}
		id.User = strings.Join(parts[:4], ":")
		if len(parts) == 5 {
			groups = parts[4]
		}
		id.Groups = []string{"system:serviceaccounts", "system:serviceaccounts:" + parts[2]}
		if id.Alias == "" {
			id.Alias = "sa-" + parts[2] + "-" + parts[3]
		}
	} else if strings.HasPrefix(rest, nodePrefix) {
		// A kubelet: system:node:NAME in group system:nodes, as the Node authorizer expects.
		parts := strings.SplitN(rest, ":", 4)
		if len(parts) < 3 || parts[2] == "" {
			return id, fmt.Errorf("--user %q: a node must be system:node:NAME", spec)
		}
		id.User = strings.Join(parts[:3], ":")
		if len(parts) == 4 {
			groups = parts[3]
		}
		id.Groups = []string{"system:nodes"}
		if id.Alias == "" {
			id.Alias = "node-" + parts[2]
		}
	} else {
		name, g, _ := strings.Cut(rest, ":")
		id.User, groups = name, g
	}
	if id.User == "" {
		return id, fmt.Errorf("--user %q: empty user name", spec)
	}
	for _, g := range strings.Split(groups, ",") {
		if g = strings.TrimSpace(g); g != "" && !contains(id.Groups, g) {
			id.Groups = append(id.Groups, g)
		}
	}
	if !contains(id.Groups, "system:authenticated") {
		id.Groups = append(id.Groups, "system:authenticated")
	}
	if id.Alias == "" {
		id.Alias = regexp.MustCompile(`[^a-zA-Z0-9._-]+`).ReplaceAllString(id.User, "-")
	}
	if !aliasRe.MatchString(id.Alias) || id.Alias == "admin" {
		return id, fmt.Errorf("--user %q: invalid or reserved alias %q", spec, id.Alias)
	}
	return id, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func randomToken() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// writeTokenFile writes the static token file in the format kube-apiserver expects:
// token,user,uid,"group1,group2"
func writeTokenFile(path string, ids []identity) error {
	var b strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&b, "%s,%s,%s,\"%s\"\n", id.Token, id.User, "uid-"+id.Alias, strings.Join(id.Groups, ","))
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

const clusterName = "quotestream-test"

func kubeconfig(server string, caPEM []byte, user string, auth *clientcmdapi.AuthInfo) *clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[clusterName] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[user] = auth
	ctxName := user + "@" + clusterName
	cfg.Contexts[ctxName] = &clientcmdapi.Context{Cluster: clusterName, AuthInfo: user, Namespace: "default"}
	cfg.CurrentContext = ctxName
	return cfg
}

func writeKubeconfig(path string, cfg *clientcmdapi.Config) error {
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return err
	}
	return os.Chmod(path, 0o600)
}

func writeIdentityKubeconfigs(dir, server string, caPEM []byte, ids []identity) error {
	for i := range ids {
		ids[i].Kubeconfig = filepath.Join(dir, ids[i].Alias+".kubeconfig")
		cfg := kubeconfig(server, caPEM, ids[i].Alias, &clientcmdapi.AuthInfo{Token: ids[i].Token})
		if err := writeKubeconfig(ids[i].Kubeconfig, cfg); err != nil {
			return err
		}
	}
	return nil
}
