// Command judge reads objects captured from the API server and says what kstatus and Flux
// make of them, with the libraries those tools use themselves:
//
//   - kstatus: sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute, what `kubectl wait`-style
//     tooling, Flux's `wait: true` (without healthCheckExprs) and cli-utils appliers use;
//   - Flux: github.com/fluxcd/pkg/runtime/cel.StatusEvaluator, which kustomize-controller
//     builds from a Kustomization's spec.healthCheckExprs, fed the entries of
//     health/flux/healthcheckexprs.yaml.
//
// Usage: judge HEALTHCHECKEXPRS_YAML CAPTURE_DIR
// Every CAPTURE_DIR/*.json holds {"object": {...}, ...}; one JSON line per file is printed:
// {"file", "kstatus", "kstatusMessage", "flux", "fluxMessage"}. A Flux evaluation error is
// reported as status "Unknown" with the error as message, as kstatus' status readers do.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/fluxcd/pkg/apis/kustomize"
	fluxcel "github.com/fluxcd/pkg/runtime/cel"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

type snippet struct {
	HealthCheckExprs []kustomize.CustomHealthCheck `json:"healthCheckExprs"`
}

type capture struct {
	Object json.RawMessage `json:"object"`
}

type verdict struct {
	File           string `json:"file"`
	Kstatus        string `json:"kstatus"`
	KstatusMessage string `json:"kstatusMessage"`
	Flux           string `json:"flux"`
	FluxMessage    string `json:"fluxMessage"`
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: judge HEALTHCHECKEXPRS_YAML CAPTURE_DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "judge:", err)
		os.Exit(1)
	}
}

func run(exprsPath, dir string) error {
	raw, err := os.ReadFile(exprsPath)
	if err != nil {
		return err
	}
	var s snippet
	if err := yaml.UnmarshalStrict(raw, &s); err != nil {
		return fmt.Errorf("%s: %w", exprsPath, err)
	}
	if len(s.HealthCheckExprs) == 0 {
		return fmt.Errorf("%s: no healthCheckExprs entries", exprsPath)
	}
	// One evaluator per apiVersion/kind, as kustomize-controller builds them.
	evaluators := map[string]*fluxcel.StatusEvaluator{}
	for i := range s.HealthCheckExprs {
		c := &s.HealthCheckExprs[i]
		ev, err := fluxcel.NewStatusEvaluator(&c.HealthCheckExpressions)
		if err != nil {
			return fmt.Errorf("%s: %s %s: %w", exprsPath, c.APIVersion, c.Kind, err)
		}
		key := c.APIVersion + "/" + c.Kind
		if _, dup := evaluators[key]; dup {
			return fmt.Errorf("%s: %s listed twice", exprsPath, key)
		}
		evaluators[key] = ev
	}

	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no *.json in %s", dir)
	}
	sort.Strings(files)
	out := json.NewEncoder(os.Stdout)
	for _, f := range files {
		v, err := judge(f, evaluators)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if err := out.Encode(v); err != nil {
			return err
		}
	}
	return nil
}

func judge(path string, evaluators map[string]*fluxcel.StatusEvaluator) (*verdict, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c capture
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, err
	}
	// Decoded the way client-go decodes what the API server sends (integers as int64).
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(c.Object); err != nil {
		return nil, fmt.Errorf("object: %w", err)
	}
	v := &verdict{File: filepath.Base(path)}

	res, err := status.Compute(u)
	if err != nil {
		v.Kstatus, v.KstatusMessage = "Error", err.Error()
	} else {
		v.Kstatus, v.KstatusMessage = res.Status.String(), res.Message
	}

	ev, ok := evaluators[u.GetAPIVersion()+"/"+u.GetKind()]
	if !ok {
		return nil, fmt.Errorf("no healthCheckExprs entry for %s %s", u.GetAPIVersion(), u.GetKind())
	}
	fres, err := ev.Evaluate(context.Background(), u)
	if err != nil {
		v.Flux, v.FluxMessage = "Unknown", err.Error()
	} else {
		v.Flux, v.FluxMessage = fres.Status.String(), fres.Message
	}
	return v, nil
}
