package policy

import (
	"context"
	"fmt"

	"cel.dev/cel-go/cel"

	"github.com/relyingparty/caddy-oidc-auth/internal/claims"
)

// celCostLimit bounds the work one evaluation may do, so no expression can stall a request:
// the bound is on the work itself, so no timer is needed per evaluation.
const celCostLimit = 100000

// compileCEL compiles a boolean expression over the named map variables.
func compileCEL(expr string, vars ...string) (cel.Program, *cel.Ast, error) {
	opts := make([]cel.EnvOption, 0, len(vars))
	for _, v := range vars {
		opts = append(opts, cel.Variable(v, cel.MapType(cel.StringType, cel.DynType)))
	}
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, nil, err
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, nil, fmt.Errorf("expression %q does not compile: %w", expr, iss.Err())
	}
	if ast.OutputType() != cel.BoolType {
		return nil, nil, fmt.Errorf("expression %q is %s, not boolean", expr, ast.OutputType())
	}
	prg, err := env.Program(ast, cel.CostLimit(celCostLimit))
	return prg, ast, err
}

// evalCEL is true only when the expression evaluates to true. An evaluation error (a missing
// claim, a wrong type, the cost limit) denies, and is returned so that the denial can say why.
func evalCEL(ctx context.Context, p cel.Program, vars map[string]any) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err // the request is gone
	}
	out, _, err := p.Eval(vars)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("the result is %s, not a boolean", out.Type().TypeName())
	}
	return b, nil
}

// exprRefusal is the reason an expression refused: its evaluation error, else that it was
// false.
func exprRefusal(err error) string {
	if err != nil {
		return "expression error: " + err.Error()
	}
	return "expression denied"
}

// celClaims is what expressions see of the user's claims: all of them, except an email that
// is not verified (an expression like claims.email.endsWith(...) must not admit a typed one).
// Without such an email it is the identity's own claims, which expressions only read.
func celClaims(id *claims.Identity) map[string]any {
	if _, hidden := id.Claims["email"]; id.EmailVerified || !hidden {
		return id.Claims
	}
	c := make(map[string]any, len(id.Claims))
	for k, v := range id.Claims {
		c[k] = v
	}
	delete(c, "email")
	return c
}
