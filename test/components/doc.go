// Package components tests the GitLab CI/CD components in gitlab-templates/:
// it runs the example application pipeline with gitlab-ci-local against a
// loopback registry and the GitLab simulator, and checks that every lotse
// command line in the templates is accepted by the real CLI. The tests are
// in components_test.go; this package has no code of its own.
package components
