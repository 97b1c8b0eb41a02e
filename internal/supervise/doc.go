// Package supervise runs the parts of a program together: each part until it
// is told to stop or fails, the first failure reported to the owner, and
// then every part stopped, gracefully where it can be, in reverse order of
// start.
package supervise
