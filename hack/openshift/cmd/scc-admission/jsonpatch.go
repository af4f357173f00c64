package main

import (
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// A remove carries "value": null, which RFC 6902 lets the receiver ignore.
type patchOperation struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// jsonDiff returns the RFC 6902 operations that turn from into to (both decoded JSON): objects
// are compared member by member, arrays of equal length element by element, anything else is
// replaced whole. A member that is null on one side and absent on the other is no change (the
// apiserver's encoding and ours may differ there).
func jsonDiff(path string, from, to any) []patchOperation {
	if reflect.DeepEqual(from, to) {
		return nil
	}
	switch f := from.(type) {
	case map[string]any:
		t, ok := to.(map[string]any)
		if !ok {
			break
		}
		var ops []patchOperation
		for _, key := range sortedKeys(f, t) {
			fv, inFrom := f[key]
			tv, inTo := t[key]
			member := path + "/" + escapePointer(key)
			switch {
			case inFrom && inTo:
				ops = append(ops, jsonDiff(member, fv, tv)...)
			case inFrom && fv != nil:
				ops = append(ops, patchOperation{Op: "remove", Path: member})
			case inTo && tv != nil:
				ops = append(ops, patchOperation{Op: "add", Path: member, Value: tv})
			}
		}
		return ops
	case []any:
		t, ok := to.([]any)
		if !ok || len(t) != len(f) {
			break
		}
		var ops []patchOperation
		for i := range f {
			ops = append(ops, jsonDiff(path+"/"+strconv.Itoa(i), f[i], t[i])...)
		}
		return ops
	}
	return []patchOperation{{Op: "replace", Path: path, Value: to}}
}

func sortedKeys(a, b map[string]any) []string {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func escapePointer(token string) string {
	return strings.ReplaceAll(strings.ReplaceAll(token, "~", "~0"), "/", "~1")
}
