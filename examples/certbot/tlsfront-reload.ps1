# win-acme installation script for tlsfront on Windows.
#
# Let win-acme write PEM files where tlsfront reads them, and run this after
# every renewal:
#   wacs.exe --source manual --host mqtt.example.com `
#     --store pemfiles --pemfilespath C:\tlsfront\certs `
#     --installation script --script C:\tlsfront\tlsfront-reload.ps1
#
# tlsfront's file watch already sees the new files; this makes the reload
# happen now and turns a refused renewal into a failed installation step
# that win-acme logs and reports (its scheduled task "win-acme renew"
# shows the failure), instead of a line in tlsfront's log.
param(
    # tlsfront's --admin address.
    [string]$Admin = "127.0.0.1:9901"
)
$ErrorActionPreference = "Stop"

try {
    # 200: every certificate reloaded or unchanged. Anything else throws.
    $r = Invoke-WebRequest -Method POST -Uri "http://$Admin/reload" -UseBasicParsing -TimeoutSec 30
    Write-Output $r.Content
} catch {
    # A 500 carries tlsfront's reason for each certificate it refused.
    $body = ""
    if ($_.Exception.Response) {
        $reader = New-Object System.IO.StreamReader($_.Exception.Response.GetResponseStream())
        $body = $reader.ReadToEnd()
    }
    Write-Error "tlsfront did not accept the renewed certificate (it keeps serving the previous one): $($_.Exception.Message) $body"
    exit 1
}
