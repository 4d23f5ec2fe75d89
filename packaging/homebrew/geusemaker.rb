# Homebrew formula for geusemaker. In the repository this is a template: the release workflow
# fills in the version, the repository and the release archives' SHA-256 checksums
# (scripts/render-formula.sh) and attaches the result to the GitHub Release; copy that into a
# tap (e.g. <org>/homebrew-tap/Formula/geusemaker.rb).
class Geusemaker < Formula
  desc "Stand up a private AI stack on AWS from readable Rhai recipes"
  homepage "https://github.com/@REPOSITORY@"
  version "@VERSION@"
  license "Apache-2.0"

  on_macos do
    on_arm do
      url "https://github.com/@REPOSITORY@/releases/download/v@VERSION@/geusemaker-@VERSION@-macos-arm64.tar.gz"
      sha256 "@SHA256_MACOS_ARM64@"
    end
    on_intel do
      url "https://github.com/@REPOSITORY@/releases/download/v@VERSION@/geusemaker-@VERSION@-macos-x86_64.tar.gz"
      sha256 "@SHA256_MACOS_X86_64@"
    end
  end

  on_linux do
    on_arm do
      url "https://github.com/@REPOSITORY@/releases/download/v@VERSION@/geusemaker-@VERSION@-linux-aarch64.tar.gz"
      sha256 "@SHA256_LINUX_AARCH64@"
    end
    on_intel do
      url "https://github.com/@REPOSITORY@/releases/download/v@VERSION@/geusemaker-@VERSION@-linux-x86_64.tar.gz"
      sha256 "@SHA256_LINUX_X86_64@"
    end
  end

  def install
    bin.install "geusemaker"
    # Completions and the man page come from the binary's own command definitions.
    generate_completions_from_executable(bin/"geusemaker", "completions", shells: [:bash, :zsh, :fish])
    (man1/"geusemaker.1").write Utils.safe_popen_read(bin/"geusemaker", "man")
    pkgshare.install "recipes", "stdlib"
  end

  test do
    assert_match version.to_s, shell_output("#{bin}/geusemaker --version")
    assert_match "dev", shell_output("#{bin}/geusemaker recipes list")
  end
end
