// Package chaos holds tests that kill the real server binary in the middle
// of a storm of enrollments and check that nothing it acknowledged is lost.
package chaos
