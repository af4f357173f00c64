package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// What OpenShift's cluster-policy-controller gives every namespace, and the SCC plugin reads:
// a block of 10000 UIDs from 1000000000 (the supplemental groups are the same block), and
// the MCS label at the block's position (5 labels apart, two categories of 1024).
const (
	uidRangeAnnotation           = "openshift.io/sa.scc.uid-range"
	supplementalGroupsAnnotation = "openshift.io/sa.scc.supplemental-groups"
	mcsAnnotation                = "openshift.io/sa.scc.mcs"
	uidStart                     = 1000000000
	uidBlockSize                 = 10000
	uidBlocks                    = 100000
	mcsLabelsPerNamespace        = 5
	mcsCategories                = 1024
)

type namespaceAllocator struct {
	kube   kubernetes.Interface
	lister corelisters.NamespaceLister
	queue  workqueue.TypedRateLimitingInterface[string]
	// Blocks given out here, which the cache may not show yet.
	given map[int]bool
}

func newNamespaceAllocator(kube kubernetes.Interface, namespaces coreinformers.NamespaceInformer) *namespaceAllocator {
	a := &namespaceAllocator{
		kube:   kube,
		lister: namespaces.Lister(),
		queue:  workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		given:  map[int]bool{},
	}
	enqueue := func(obj any) {
		if ns, ok := obj.(*corev1.Namespace); ok && ns.Annotations[uidRangeAnnotation] == "" {
			a.queue.Add(ns.Name)
		}
	}
	_, _ = namespaces.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	})
	return a
}

// run allocates one namespace at a time, so two never get the same block.
func (a *namespaceAllocator) run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		a.queue.ShutDown()
	}()
	for {
		name, shutdown := a.queue.Get()
		if shutdown {
			return
		}
		if err := a.allocate(ctx, name); err != nil {
			klog.Errorf("namespace %s: %v (retrying)", name, err)
			a.queue.AddRateLimited(name)
		} else {
			a.queue.Forget(name)
		}
		a.queue.Done(name)
	}
}

func (a *namespaceAllocator) allocate(ctx context.Context, name string) error {
	ns, err := a.kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if ns.Annotations[uidRangeAnnotation] != "" || ns.DeletionTimestamp != nil {
		return nil
	}
	block, err := a.freeBlock()
	if err != nil {
		return err
	}
	ns = ns.DeepCopy()
	if ns.Annotations == nil {
		ns.Annotations = map[string]string{}
	}
	uids := fmt.Sprintf("%d/%d", uidStart+block*uidBlockSize, uidBlockSize)
	ns.Annotations[uidRangeAnnotation] = uids
	ns.Annotations[supplementalGroupsAnnotation] = uids
	ns.Annotations[mcsAnnotation] = mcsLabel(block * mcsLabelsPerNamespace)
	if _, err := a.kube.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		return err
	}
	a.given[block] = true
	klog.Infof("namespace %s: uid-range %s, mcs %s", name, uids, ns.Annotations[mcsAnnotation])
	return nil
}

// freeBlock is the lowest block no namespace holds.
func (a *namespaceAllocator) freeBlock() (int, error) {
	held := map[int]bool{}
	for block := range a.given {
		held[block] = true
	}
	namespaces, err := a.lister.List(labels.Everything())
	if err != nil {
		return 0, err
	}
	for _, ns := range namespaces {
		start, _, found := strings.Cut(ns.Annotations[uidRangeAnnotation], "/")
		if uid, err := strconv.Atoi(start); found && err == nil && uid >= uidStart {
			held[(uid-uidStart)/uidBlockSize] = true
		}
	}
	for block := 0; block < uidBlocks; block++ {
		if !held[block] {
			return block, nil
		}
	}
	return 0, fmt.Errorf("all %d UID blocks from %d are held", uidBlocks, uidStart)
}

// mcsLabel is the offset-th pair of categories in colexicographic order (c1,c0; c2,c0; c2,c1;
// c3,c0; ...), written highest first as OpenShift does.
func mcsLabel(offset int) string {
	high := 1
	for (high+1)*high/2 <= offset && high+1 < mcsCategories {
		high++
	}
	return fmt.Sprintf("s0:c%d,c%d", high, offset-high*(high-1)/2)
}
