package gitlab

// Test hooks for the external test package.
var (
	ParseExistingIID = parseExistingIID
	ErrorMessage     = errorMessage
)
