package admin

import (
	"bytes"
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/embark-iot/embark/pkg/operator"
)

// registeredPatterns returns the patterns of every mux.HandleFunc and
// mux.Handle call in the package's source: the routes of the admin API.
// A pattern that is not a string literal fails the test, so that every
// route stays visible here.
func registeredPatterns(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var out []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "HandleFunc" && sel.Sel.Name != "Handle") || len(call.Args) != 2 {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				t.Errorf("%s: route pattern is not a string literal", fset.Position(call.Pos()))
				return true
			}
			p, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
			return true
		})
	}
	if len(out) < 20 {
		t.Fatalf("found only %d routes: the source walk is broken", len(out))
	}
	slices.Sort(out)
	return out
}

// TestEveryRouteHasARole: deny by default only works if the table is
// complete; and an entry for a route that no longer exists is a stale rule.
func TestEveryRouteHasARole(t *testing.T) {
	routes := registeredPatterns(t)
	for _, p := range routes {
		method, _, ok := strings.Cut(p, " ")
		if !ok {
			t.Errorf("route %q has no method: every route must name one", p)
			continue
		}
		role, ok := RouteRole(p)
		if !ok {
			t.Errorf("route %q has no entry in routeRoles (auth.go): remote operators are refused until it has one", p)
			continue
		}
		if role == operator.RoleAuditor && method != http.MethodGet && method != http.MethodHead {
			t.Errorf("route %q is open to auditors, who may only read", p)
		}
		if method != http.MethodGet && role < operator.RoleOperator {
			t.Errorf("route %q changes something but needs only %s", p, role)
		}
	}
	for p := range routeRoles {
		if !slices.Contains(routes, p) {
			t.Errorf("routeRoles has %q, which no handler registers", p)
		}
	}
}

type openapiDocument struct {
	OpenAPI string                                 `yaml:"openapi"`
	Paths   map[string]map[string]openapiOperation `yaml:"paths"`
}

type openapiOperation struct {
	Summary string `yaml:"summary"`
	Role    string `yaml:"x-embark-role"`
}

// TestOpenAPICoversEveryRoute: each registered route is documented with
// its minimum role, and the document describes no route that does not
// exist.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	var doc openapiDocument
	if err := yaml.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.0") {
		t.Fatalf("openapi %q, want 3.0.x", doc.OpenAPI)
	}
	documented := map[string]openapiOperation{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if method == "parameters" {
				continue
			}
			documented[strings.ToUpper(method)+" "+path] = op
		}
	}
	routes := registeredPatterns(t)
	for _, p := range routes {
		op, ok := documented[p]
		if !ok {
			t.Errorf("route %q is missing from openapi.yaml", p)
			continue
		}
		want, _ := RouteRole(p)
		if op.Role != want.String() {
			t.Errorf("openapi.yaml: %s has x-embark-role %q, auth.go says %s", p, op.Role, want)
		}
		if op.Summary == "" {
			t.Errorf("openapi.yaml: %s has no summary", p)
		}
	}
	for p := range documented {
		if !slices.Contains(routes, p) {
			t.Errorf("openapi.yaml documents %q, which no handler registers", p)
		}
	}
}

func TestOpenAPIServed(t *testing.T) {
	e := newEnv(t)
	var got []byte
	if err := InProcess(e.h).Raw(context.Background(), "/v1/openapi.yaml", &got); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, file) {
		t.Fatal("GET /v1/openapi.yaml differs from openapi.yaml")
	}
}
