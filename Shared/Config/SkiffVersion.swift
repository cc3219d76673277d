/// Versions Skiff reports.
public enum SkiffVersion {
    /// The Open WebUI release whose API Skiff serves.
    public static let openWebUI = "0.12.4"
}
