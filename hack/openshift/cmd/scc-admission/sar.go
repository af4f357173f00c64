package main

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	authorizationclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
)

// sarAuthorizer answers the plugin's authorizer questions (may this user or ServiceAccount `use`
// this SCC?) with SubjectAccessReviews, so the apiserver's RBAC decides as it does in OpenShift.
// The plugin asks about two per SCC for the user and as many for the pod's ServiceAccount, once
// in the mutating and again in the validating webhook: a short cache keeps one admission from
// taking seconds, and expires fast enough that a grant made by a test counts at once after.
type sarAuthorizer struct {
	client authorizationclient.SubjectAccessReviewInterface
	ttl    time.Duration

	mu      sync.Mutex
	answers map[string]sarAnswer
}

type sarAnswer struct {
	decision authorizer.Decision
	reason   string
	expires  time.Time
}

func newSARAuthorizer(client authorizationclient.SubjectAccessReviewInterface, ttl time.Duration) *sarAuthorizer {
	return &sarAuthorizer{client: client, ttl: ttl, answers: map[string]sarAnswer{}}
}

func (s *sarAuthorizer) Authorize(ctx context.Context, attributes authorizer.Attributes) (authorizer.Decision, string, error) {
	spec := reviewSpec(attributes)
	keyBytes, err := json.Marshal(spec)
	if err != nil {
		return authorizer.DecisionNoOpinion, "", err
	}
	key := string(keyBytes)
	now := time.Now()
	s.mu.Lock()
	cached, ok := s.answers[key]
	s.mu.Unlock()
	if ok && now.Before(cached.expires) {
		return cached.decision, cached.reason, nil
	}
	review, err := s.client.Create(ctx, &authorizationv1.SubjectAccessReview{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		// Not cached, and no opinion: the plugin then treats the SCC as not usable (fail closed).
		return authorizer.DecisionNoOpinion, "", err
	}
	answer := sarAnswer{decision: authorizer.DecisionNoOpinion, reason: review.Status.Reason, expires: now.Add(s.ttl)}
	switch {
	case review.Status.Allowed:
		answer.decision = authorizer.DecisionAllow
	case review.Status.Denied:
		answer.decision = authorizer.DecisionDeny
	}
	s.mu.Lock()
	for k, a := range s.answers {
		if now.After(a.expires) {
			delete(s.answers, k)
		}
	}
	s.answers[key] = answer
	s.mu.Unlock()
	return answer.decision, answer.reason, nil
}

func reviewSpec(attributes authorizer.Attributes) authorizationv1.SubjectAccessReviewSpec {
	var spec authorizationv1.SubjectAccessReviewSpec
	if u := attributes.GetUser(); u != nil {
		spec.User, spec.UID, spec.Groups = u.GetName(), u.GetUID(), u.GetGroups()
		if extra := u.GetExtra(); len(extra) > 0 {
			spec.Extra = map[string]authorizationv1.ExtraValue{}
			for key, values := range extra {
				spec.Extra[key] = values
			}
		}
	}
	if attributes.IsResourceRequest() {
		spec.ResourceAttributes = &authorizationv1.ResourceAttributes{
			Namespace:   attributes.GetNamespace(),
			Verb:        attributes.GetVerb(),
			Group:       attributes.GetAPIGroup(),
			Version:     attributes.GetAPIVersion(),
			Resource:    attributes.GetResource(),
			Subresource: attributes.GetSubresource(),
			Name:        attributes.GetName(),
		}
	} else {
		spec.NonResourceAttributes = &authorizationv1.NonResourceAttributes{Path: attributes.GetPath(), Verb: attributes.GetVerb()}
	}
	return spec
}
