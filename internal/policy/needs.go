package policy

import (
	"slices"
	"strings"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
)

// Needs is what a policy reads beyond the standard identity (subject, verified email, groups,
// impersonator): whether it reads the request, so that no decision of it may be reused for
// another request, and which claims, so that a session keeps them for the decisions made on
// later requests.
type Needs struct {
	Request bool     // reads request.*: decide on every request
	Claims  []string // top-level claim names read
	All     bool     // reads the claim set as a whole: keep every claim
}

func (n *Needs) add(o Needs) {
	n.Request = n.Request || o.Request
	n.All = n.All || o.All
	for _, c := range o.Claims {
		if !slices.Contains(n.Claims, c) {
			n.Claims = append(n.Claims, c)
		}
	}
}

// Union is what several policies read together.
func Union(ns ...Needs) Needs {
	var u Needs
	for _, n := range ns {
		u.add(n)
	}
	return u
}

// claimNames are the top-level names a claim path may be kept under: a name that is itself a
// key ("https://example.com/roles"), and the first segment of a dotted path.
func claimNames(path string) []string {
	if first, _, dotted := strings.Cut(path, "."); dotted {
		return []string{path, first}
	}
	return []string{path}
}

// exprNeeds reads a checked expression: does it name request, and which fields of the map
// variable claimsVar does it select (claimsVar.x, claimsVar["x"], has(claimsVar.x)). Any other
// use of claimsVar (iterating it, "k" in it, passing it whole) needs all of it.
func exprNeeds(a *cel.Ast, claimsVar string) Needs {
	var n Needs
	root := a.NativeRep().Expr()
	consumed := map[int64]bool{}
	var idents []celast.Expr
	celast.PreOrderVisit(root, celast.NewExprVisitor(func(e celast.Expr) {
		switch e.Kind() {
		case celast.IdentKind:
			switch e.AsIdent() {
			case "request":
				n.Request = true
			case claimsVar:
				idents = append(idents, e)
			}
		case celast.SelectKind:
			if op := e.AsSelect().Operand(); op.Kind() == celast.IdentKind && op.AsIdent() == claimsVar {
				consumed[op.ID()] = true
				n.add(Needs{Claims: []string{e.AsSelect().FieldName()}})
			}
		case celast.CallKind:
			call := e.AsCall()
			if call.FunctionName() != operators.Index || len(call.Args()) != 2 {
				return
			}
			obj, key := call.Args()[0], call.Args()[1]
			if obj.Kind() != celast.IdentKind || obj.AsIdent() != claimsVar || key.Kind() != celast.LiteralKind {
				return
			}
			if s, ok := key.AsLiteral().(types.String); ok {
				consumed[obj.ID()] = true
				n.add(Needs{Claims: []string{string(s)}})
			}
		}
	}))
	for _, e := range idents {
		if !consumed[e.ID()] {
			n.All = true
		}
	}
	return n
}
