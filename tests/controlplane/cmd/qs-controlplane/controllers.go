package main

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	cacheddiscovery "k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/controller-manager/pkg/informerfactory"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/controller/garbagecollector"
	namespacecontroller "k8s.io/kubernetes/pkg/controller/namespace"
)

// startControllers runs the two kube-controller-manager controllers that matter for an
// operator's tests, wired the way kube-controller-manager wires them
// (cmd/kube-controller-manager/app/core.go) and the way the upstream garbage-collector
// integration test does:
//   - the garbage collector: deleting an owner deletes its dependents (ownerReferences,
//     background and foreground propagation, orphaning);
//   - the namespace controller: deleting a namespace deletes its content and the namespace
//     (without it a deleted namespace stays Terminating forever).
//
// No other controller runs: Deployments get no ReplicaSets or Pods, nothing gets status.
func startControllers(ctx context.Context, base *rest.Config) error {
	cfg := rest.CopyConfig(base)
	cfg.QPS, cfg.Burst = 200, 400
	cfg.UserAgent = "qs-controlplane/controllers"

	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	metadataClient, err := metadata.NewForConfig(cfg)
	if err != nil {
		return err
	}
	discoveryClient, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}

	sharedInformers := informers.NewSharedInformerFactory(client, 0)
	metadataInformers := metadatainformer.NewSharedInformerFactory(metadataClient, 0)
	informersStarted := make(chan struct{})

	// Garbage collector.
	restMapper := restmapper.NewDeferredDiscoveryRESTMapper(cacheddiscovery.NewMemCacheClient(discoveryClient))
	restMapper.Reset()
	gc, err := garbagecollector.NewGarbageCollector(
		ctx, client, metadataClient, restMapper,
		garbagecollector.DefaultIgnoredResources(),
		informerfactory.NewInformerFactory(sharedInformers, metadataInformers),
		informersStarted,
	)
	if err != nil {
		return fmt.Errorf("garbage collector: %w", err)
	}

	// Namespace controller.
	nsc := namespacecontroller.NewNamespaceController(
		ctx, client, metadataClient,
		client.Discovery().ServerPreferredNamespacedResources,
		sharedInformers.Core().V1().Namespaces(),
		5*time.Minute, v1.FinalizerKubernetes,
	)

	// CRDs come and go during tests: resync the mapper and the GC monitors quickly.
	const syncPeriod = 5 * time.Second
	go wait.Until(restMapper.Reset, syncPeriod, ctx.Done())
	go gc.Run(ctx, 5, syncPeriod)
	go gc.Sync(ctx, discoveryClient, syncPeriod)
	go nsc.Run(ctx, 5)

	sharedInformers.Start(ctx.Done())
	metadataInformers.Start(ctx.Done())
	close(informersStarted)
	klog.InfoS("qs-controlplane: controllers started", "controllers", []string{"garbage-collector", "namespace"})
	return nil
}
