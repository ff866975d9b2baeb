package policy

import (
	"fmt"
	"strings"
)

// How identities are compared: subjects exactly (they are case-sensitive strings); emails and
// domains with ASCII-only case folding, so that no Unicode lookalike ("admİn@", whose
// strings.ToLower is "admin@") ever equals a listed address.

// foldASCII lower-cases the ASCII letters of s and leaves every other byte as it is.
func foldASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// asciiOnly refuses a listed email or domain holding anything but printable ASCII: such an
// entry could only ever match a lookalike.
func asciiOnly(option string, values []string) error {
	for _, v := range values {
		for i := 0; i < len(v); i++ {
			if v[i] <= 0x20 || v[i] >= 0x7f {
				return fmt.Errorf("%s %q: only ASCII emails and domains can be listed (write an internationalised domain in its xn-- form)", option, v)
			}
		}
	}
	return nil
}

// foldedSet is the set of the values, folded.
func foldedSet(l []string) map[string]bool {
	m := make(map[string]bool, len(l))
	for _, s := range l {
		m[foldASCII(s)] = true
	}
	return m
}

// emailDomain is the folded domain of an email, "" when it has none.
func emailDomain(email string) string {
	at := strings.LastIndexByte(email, '@')
	if at < 0 {
		return ""
	}
	return foldASCII(email[at+1:])
}

// SameEmail compares two emails as the policies do: ASCII case folded, nothing else.
func SameEmail(a, b string) bool { return a != "" && foldASCII(a) == foldASCII(b) }
