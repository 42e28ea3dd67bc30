package scaffold

// Small mirrors of the ArgoCD and Kubernetes types the scaffold writes, with
// the JSON names of github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1
// and k8s.io/api. ArgoCD itself is not a dependency (it is huge); decoding
// with KnownFields(true) into these catches misspelt and misplaced fields,
// which the API server would otherwise drop without a word.

type objectMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
	Finalizers  []string          `yaml:"finalizers"`
}

type applicationSet struct {
	APIVersion string             `yaml:"apiVersion"`
	Kind       string             `yaml:"kind"`
	Metadata   objectMeta         `yaml:"metadata"`
	Spec       applicationSetSpec `yaml:"spec"`
}

type applicationSetSpec struct {
	GoTemplate        bool                      `yaml:"goTemplate"`
	GoTemplateOptions []string                  `yaml:"goTemplateOptions"`
	Generators        []applicationSetGenerator `yaml:"generators"`
	Template          applicationSetTemplate    `yaml:"template"`
}

type applicationSetGenerator struct {
	Git *gitGenerator `yaml:"git"`
}

type gitGenerator struct {
	RepoURL     string                `yaml:"repoURL"`
	Revision    string                `yaml:"revision"`
	Directories []gitDirectoryGenItem `yaml:"directories"`
}

type gitDirectoryGenItem struct {
	Path    string `yaml:"path"`
	Exclude bool   `yaml:"exclude"`
}

type applicationSetTemplate struct {
	Metadata objectMeta      `yaml:"metadata"`
	Spec     applicationSpec `yaml:"spec"`
}

type applicationSpec struct {
	Project     string                 `yaml:"project"`
	Source      applicationSource      `yaml:"source"`
	Destination applicationDestination `yaml:"destination"`
	SyncPolicy  syncPolicy             `yaml:"syncPolicy"`
}

type applicationSource struct {
	RepoURL        string                `yaml:"repoURL"`
	TargetRevision string                `yaml:"targetRevision"`
	Path           string                `yaml:"path"`
	Helm           applicationSourceHelm `yaml:"helm"`
}

type applicationSourceHelm struct {
	ReleaseName string   `yaml:"releaseName"`
	ValueFiles  []string `yaml:"valueFiles"`
}

type applicationDestination struct {
	Server    string `yaml:"server"`
	Name      string `yaml:"name"`
	Namespace string `yaml:"namespace"`
}

type syncPolicy struct {
	Automated   *syncPolicyAutomated `yaml:"automated"`
	SyncOptions []string             `yaml:"syncOptions"`
	Retry       retryStrategy        `yaml:"retry"`
}

type syncPolicyAutomated struct {
	Prune      bool `yaml:"prune"`
	SelfHeal   bool `yaml:"selfHeal"`
	AllowEmpty bool `yaml:"allowEmpty"`
}

type retryStrategy struct {
	Limit   int64 `yaml:"limit"`
	Backoff struct {
		Duration    string `yaml:"duration"`
		Factor      int64  `yaml:"factor"`
		MaxDuration string `yaml:"maxDuration"`
	} `yaml:"backoff"`
}

type appProject struct {
	APIVersion string         `yaml:"apiVersion"`
	Kind       string         `yaml:"kind"`
	Metadata   objectMeta     `yaml:"metadata"`
	Spec       appProjectSpec `yaml:"spec"`
}

type appProjectSpec struct {
	Description                string                   `yaml:"description"`
	SourceRepos                []string                 `yaml:"sourceRepos"`
	Destinations               []applicationDestination `yaml:"destinations"`
	ClusterResourceWhitelist   []groupKind              `yaml:"clusterResourceWhitelist"`
	NamespaceResourceWhitelist []groupKind              `yaml:"namespaceResourceWhitelist"`
	OrphanedResources          struct {
		Warn bool `yaml:"warn"`
	} `yaml:"orphanedResources"`
}

type groupKind struct {
	Group string `yaml:"group"`
	Kind  string `yaml:"kind"`
}

type configMap struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   objectMeta        `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
}

// notificationWebhookService is service.webhook.<name> of argocd-notifications-cm.
type notificationWebhookService struct {
	URL     string `yaml:"url"`
	Headers []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"headers"`
}

// notificationTemplate is template.<name> of argocd-notifications-cm.
type notificationTemplate struct {
	Webhook map[string]struct {
		Method string `yaml:"method"`
		Path   string `yaml:"path"`
		Body   string `yaml:"body"`
	} `yaml:"webhook"`
}

// notificationTrigger is one condition of trigger.<name>.
type notificationTrigger struct {
	Description string   `yaml:"description"`
	When        string   `yaml:"when"`
	OncePer     string   `yaml:"oncePer"`
	Send        []string `yaml:"send"`
}

// argoCDNotification mirrors webhook.ArgoCDNotification, the body lotsed's
// POST /webhooks/argocd decodes (internal packages do not import webhook).
type argoCDNotification struct {
	App         string   `json:"app"`
	Stage       string   `json:"stage"`
	Application string   `json:"application"`
	Health      string   `json:"health"`
	Sync        string   `json:"sync"`
	Revision    string   `json:"revision"`
	Images      []string `json:"images"`
	Message     string   `json:"message"`
}

type deployment struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
	Spec       struct {
		Replicas int `yaml:"replicas"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     podSpec    `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	AutomountServiceAccountToken *bool `yaml:"automountServiceAccountToken"`
	SecurityContext              struct {
		RunAsNonRoot   *bool `yaml:"runAsNonRoot"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	Containers []container `yaml:"containers"`
	Volumes    []struct {
		Name     string    `yaml:"name"`
		EmptyDir *struct{} `yaml:"emptyDir"`
	} `yaml:"volumes"`
}

type container struct {
	Name  string `yaml:"name"`
	Image string `yaml:"image"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type service struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
	Spec       struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}
