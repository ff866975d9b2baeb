package policy

import (
	"context"
	"fmt"
	"time"

	"cel.dev/cel-go/cel"

	"github.com/relyingparty/caddy-oidc-auth/internal/claims"
)

// celCostLimit bounds the work one evaluation may do, so no expression can stall a request.
const celCostLimit = 100000

// celTimeout bounds one evaluation's wall time.
const celTimeout = 100 * time.Millisecond

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
	prg, err := env.Program(ast, cel.CostLimit(celCostLimit), cel.InterruptCheckFrequency(100))
	return prg, ast, err
}

// evalCEL is true only when the expression evaluates to true. An evaluation error (a missing
// claim, a wrong type, the cost limit) denies, and is returned so that the denial can say why.
func evalCEL(ctx context.Context, p cel.Program, vars map[string]any) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, celTimeout)
	defer cancel()
	out, _, err := p.ContextEval(ctx, vars)
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
func celClaims(id *claims.Identity) map[string]any {
	c := make(map[string]any, len(id.Claims)+1)
	for k, v := range id.Claims {
		c[k] = v
	}
	if !id.EmailVerified {
		delete(c, "email")
	}
	return c
}
