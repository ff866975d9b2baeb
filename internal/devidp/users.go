package devidp

import (
	"fmt"
	"slices"
)

// User is an account of the provider. The JSON names are those of cmd/devidp's -users file.
type User struct {
	// Key is the short handle used in forms, tests and button ids: "alice". Letters, digits,
	// '-' and '_' only.
	Key string `json:"key"`
	// ID is the subject (sub), Auth0-style: "auth0|alice".
	ID string `json:"id"`
	// Email and EmailVerified are sent with the email scope.
	Email         string `json:"email,omitempty"`
	EmailVerified bool   `json:"email_verified,omitempty"`
	// Name is sent with the profile scope.
	Name string `json:"name,omitempty"`
	// Nickname is Auth0's nickname, also sent as preferred_username (profile scope), and the
	// Keycloak-style impersonator username. Empty falls back to Key there.
	Nickname string `json:"nickname,omitempty"`
	// Groups is sent as `groups` when non-empty: the provider's stand-in for an Auth0 Rule
	// adding groups.
	Groups []string `json:"groups,omitempty"`
	// Roles is sent as `roles` when non-empty.
	Roles []string `json:"roles,omitempty"`
	// Admin lets the user open the admin page and impersonate from it.
	Admin bool `json:"admin,omitempty"`
}

// DemoUsers returns the demo accounts, all with verified emails: alice and bob (staff),
// carol (the CEO, ceo@example.com), admin (an administrator in the admins group) and mallory
// (an administrator of the provider from another domain, whom a site's policy may refuse).
func DemoUsers() []User {
	return []User{
		{Key: "alice", ID: "auth0|alice", Email: "alice@example.com", EmailVerified: true,
			Name: "Alice Example", Nickname: "alice", Groups: []string{"staff"}, Roles: []string{"user"}},
		{Key: "bob", ID: "auth0|bob", Email: "bob@example.com", EmailVerified: true,
			Name: "Bob Example", Nickname: "bob", Groups: []string{"staff", "support"}},
		{Key: "carol", ID: "auth0|carol", Email: "ceo@example.com", EmailVerified: true,
			Name: "Carol CEO", Nickname: "carol", Groups: []string{"executives"}, Roles: []string{"executive"}},
		{Key: "admin", ID: "auth0|admin", Email: "admin@example.com", EmailVerified: true,
			Name: "Ada Admin", Nickname: "admin", Groups: []string{"admins"}, Roles: []string{"admin"}, Admin: true},
		{Key: "mallory", ID: "auth0|mallory", Email: "mallory@example.net", EmailVerified: true,
			Name: "Mallory Example", Nickname: "mallory", Admin: true},
	}
}

// loadUsers copies and checks the configured users.
func (s *Server) loadUsers(users []User) error {
	for i := range users {
		u := users[i]
		if u.Key == "" || u.ID == "" {
			return fmt.Errorf("devidp: user %d needs both Key and ID", i)
		}
		for _, r := range u.Key {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("devidp: user Key %q may hold only letters, digits, '-' and '_'", u.Key)
			}
		}
		if s.user(u.Key) != nil || s.user(u.ID) != nil {
			return fmt.Errorf("devidp: user %q/%q clashes with another user's Key or ID", u.Key, u.ID)
		}
		u.Groups, u.Roles = slices.Clone(u.Groups), slices.Clone(u.Roles)
		s.users = append(s.users, &u)
	}
	return nil
}

// user finds a user by Key or ID; nil when there is none.
func (s *Server) user(keyOrID string) *User {
	if keyOrID == "" {
		return nil
	}
	for _, u := range s.users {
		if u.Key == keyOrID || u.ID == keyOrID {
			return u
		}
	}
	return nil
}

// label is how a user appears on buttons: "Alice Example (alice@example.com)".
func (u *User) label() string {
	name := u.Name
	if name == "" {
		name = u.Key
	}
	if u.Email == "" {
		return name
	}
	return name + " (" + u.Email + ")"
}

// username is the Keycloak-style username: the nickname, else the key.
func (u *User) username() string {
	if u.Nickname != "" {
		return u.Nickname
	}
	return u.Key
}
