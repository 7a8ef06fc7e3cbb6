"""The roles every host gets: common (OS baseline), node_exporter, and backups."""

from __future__ import annotations

from compiler.ir.names import NODE_EXPORTER_PORT, SSH_PORT
from compiler.ir.backups import BACKUP_SCHEDULED_METRIC, NODE_EXPORTER_TEXTFILE_DIR
from compiler.targets.ansible.role import (Role, apt, copy, expr, repository, service, services_ready_var, task,
                                            template, when_ready)

COMMON_AUTO_UPGRADES = 'APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n'
COMMON_SYSCTL = """\
# Kernel network hardening (platformc common role).
net.ipv4.conf.all.rp_filter = 1
net.ipv4.conf.default.rp_filter = 1
net.ipv4.conf.all.accept_redirects = 0
net.ipv4.conf.default.accept_redirects = 0
net.ipv4.conf.all.send_redirects = 0
net.ipv4.conf.all.accept_source_route = 0
net.ipv6.conf.all.accept_redirects = 0
net.ipv4.tcp_syncookies = 1
kernel.kptr_restrict = 2
kernel.dmesg_restrict = 1
fs.protected_hardlinks = 1
fs.protected_symlinks = 1
"""


# sshd's MaxAuthTries on every host (CIS: 4 or fewer). ssh offers an agent's keys one attempt each, so the README
# says how to name the admin key for the hosts (an agent with more keys is refused before reaching it).
SSH_MAX_AUTH_TRIES = 3


# The environment variable Terraform reads admin_ssh_public_key from: the operator sets the key once for both tools.
ADMIN_KEY_ENV = "TF_VAR_admin_ssh_public_key"
ADMIN_KEY_SET = ["common_admin_user | length > 0", "common_admin_ssh_public_key | trim | length > 0"]
ADMIN_HOME = "{{ ansible_facts.getent_passwd[common_admin_user][4] }}"


def common() -> Role:
    r = "common"
    return Role(
        name=r,
        description="OS baseline: SSH hardening, unattended security upgrades, cloud time sync, kernel and nftables firewall.",
        defaults={
            "common_packages": ["openssh-server", "chrony", "nftables", "unattended-upgrades"],
            "common_ssh_port": SSH_PORT,
            "common_ssh_allow_tcp_forwarding": False,
            "common_ssh_max_auth_tries": SSH_MAX_AUTH_TRIES,
            "common_ntp_servers": [],
            "common_ptp_hyperv": False,
            # [{comment, protocol, ports, sources}]: the inventory composes each host group's rules from the
            # region's connections; a host with none admits only loopback and established traffic
            "common_firewall_rules": [],
            # [{comment, protocol, ports, to_port}]: ports a load balancer delivers to that the host serves on
            # to_port, redirected before the rules above see them (Azure's PostgreSQL endpoints,
            # compiler/ir/postgres_ha.py); none elsewhere
            "common_port_redirects": [],
            # The login user Terraform installs the region's admin key for at launch (compiler/ir/names.py
            # DATA_HOST_LOGIN_USER; the inventory sets it, empty on GCP's OS Login) and the operators' current public
            # key: the same value Terraform's admin_ssh_public_key takes, read from its TF_VAR_ environment variable
            # unless set. The role makes it the user's only key, so a rotated key reaches hosts launched with the old
            # one (AWS installs a key pair at launch only; Azure VMs ignore a changed admin_ssh_key).
            "common_admin_user": "",
            "common_admin_ssh_public_key": "{{ lookup('ansible.builtin.env', '" + ADMIN_KEY_ENV + "') }}",
        },
        vars=services_ready_var(r, "common_install"),
        tasks={"main": [
            apt("Install the baseline packages", "{{ common_packages }}", register="common_install"),
            template("Harden the SSH daemon", "sshd-hardening.conf.j2",
                     "/etc/ssh/sshd_config.d/10-platformc-hardening.conf",
                     validate="/usr/sbin/sshd -t -f %s", notify="Restart the SSH daemon"),
            copy("Enable unattended security upgrades", "/etc/apt/apt.conf.d/20auto-upgrades",
                 content=COMMON_AUTO_UPGRADES),
            template("Take time from the cloud's time source", "chrony.conf.j2", "/etc/chrony/chrony.conf",
                     notify="Restart chrony"),
            copy("Harden the kernel network settings", "/etc/sysctl.d/60-platformc-hardening.conf",
                 content=COMMON_SYSCTL, notify="Reload the kernel parameters"),
            template("Write the host firewall from the spec's rules", "nftables.conf.j2", "/etc/nftables.conf",
                     mode="0755", validate="/usr/sbin/nft -c -f %s", notify="Reload the firewall"),
            task("Look up the login user", "ansible.builtin.getent",
                 {"database": "passwd", "key": "{{ common_admin_user }}"}, when=ADMIN_KEY_SET),
            task("Create the login user's SSH directory", "ansible.builtin.file",
                 {"path": ADMIN_HOME + "/.ssh", "state": "directory", "owner": "{{ common_admin_user }}",
                  "group": "{{ common_admin_user }}", "mode": "0700"}, when=ADMIN_KEY_SET),
            copy("Authorize the operators' current key, and only it, for the login user",
                 ADMIN_HOME + "/.ssh/authorized_keys", content="{{ common_admin_ssh_public_key | trim }}\n",
                 owner="{{ common_admin_user }}", group="{{ common_admin_user }}", mode="0600", when=ADMIN_KEY_SET),
            service("Start the baseline services at boot", "{{ common_service }}", r,
                    loop=["ssh", "chrony", "nftables", "unattended-upgrades"],
                    loop_control={"loop_var": "common_service"}),
        ]},
        handlers=[
            service("Restart the SSH daemon", "ssh", r, state="restarted", enabled=None),
            service("Restart chrony", "chrony", r, state="restarted", enabled=None),
            task("Reload the kernel parameters", "ansible.builtin.command", {"cmd": "sysctl --system"},
                 changed_when=True, when=when_ready(r)),
            service("Reload the firewall", "nftables", r, state="reloaded", enabled=None),
        ],
    )


def node_exporter() -> Role:
    r = "node_exporter"
    return Role(
        name=r,
        description=(f"Prometheus node_exporter from the distribution (port {NODE_EXPORTER_PORT}, systemd and process "
                     "collectors)."),
        defaults={"node_exporter_enabled": True, "node_exporter_port": NODE_EXPORTER_PORT,
                  "node_exporter_collectors": ["systemd", "processes"],
                  # the textfile collector's directory (the backups role's script records each success there),
                  # named rather than left to the package's build-time default
                  "node_exporter_textfile_dir": NODE_EXPORTER_TEXTFILE_DIR},
        vars=services_ready_var(r, "node_exporter_install"),
        tasks={"main": [
            apt("Install node_exporter", "prometheus-node-exporter", register="node_exporter_install"),
            template("Configure node_exporter's listen address and collectors", "node-exporter.default.j2",
                     "/etc/default/prometheus-node-exporter", notify="Restart node_exporter"),
            service("Start node_exporter at boot", "prometheus-node-exporter", r),
        ]},
        handlers=[service("Restart node_exporter", "prometheus-node-exporter", r, state="restarted", enabled=None)],
    )


def backups() -> Role:
    r = "backups"
    each_job = {"loop": "{{ backups_jobs }}",
                "loop_control": {"loop_var": "backups_job", "label": "{{ backups_job_id }}"}}
    on_this_host = "backups_job.hosts is not defined or inventory_hostname in backups_job.hosts"
    return Role(
        name=r,
        description="Scheduled backups to the region's backup bucket (and the DR partner's), from the spec's schedules.",
        defaults={
            "backups_url": "",
            "backups_dr_partner_url": "",
            # [{name, kind, minute, hour, day, month, weekday, retention_days, copy_to_dr_partner, permanent}]; a DR
            # standby cluster's jobs add instance, pg_port and the hosts that run it. permanent: WAL-G permanent base
            # backups, whose WAL `delete garbage` keeps only from their start to their finish (compiler/ir/backups.py)
            "backups_jobs": [],
            "backups_script": "/usr/local/sbin/platformc-backup",
            "backups_log_dir": "/var/log/platformc-backup",
            # where the script records each success for node_exporter's textfile collector (monitoring's BackupMissed)
            "backups_textfile_dir": NODE_EXPORTER_TEXTFILE_DIR,
            # URL scheme -> the distribution package of that cloud's storage CLI
            "backups_cli_packages": {"s3": ["awscli"], "gs": ["google-cloud-cli"], "azure": ["azure-cli"]},
        },
        vars={
            **services_ready_var(r, "backups_cron_install"),
            "backups_destinations": expr(
                "[backups_url]",
                "+ ([backups_dr_partner_url] if backups_jobs | selectattr('copy_to_dr_partner') | list else [])"),
            "backups_schemes": "{{ backups_destinations | map('regex_replace', '://.*$', '') | unique | sort }}",
            # read inside the scheduling loop, where `backups_job` is the job at hand
            "backups_job_args": expr(
                "'--kind ' ~ backups_job.kind ~ ' --schedule ' ~ backups_job.name",
                "~ ' --url ' ~ backups_url ~ ' --retention-days ' ~ backups_job.retention_days",
                "~ ((' --copy-to ' ~ backups_dr_partner_url) if backups_job.copy_to_dr_partner else '')",
                "~ ((' --pg-port ' ~ backups_job.pg_port) if backups_job.pg_port is defined else '')",
                "~ (' --permanent' if backups_job.permanent | default(false) else '')",
                "~ ' --textfile-dir ' ~ backups_textfile_dir"),
            # unique per job: a DR standby cluster's jobs carry its instance
            "backups_job_id": expr("backups_job.kind ~ '-' ~ backups_job.name",
                                   "~ (('-' ~ backups_job.instance) if backups_job.instance is defined else '')"),
            "backups_job_log": "{{ backups_log_dir }}/{{ backups_job_id }}.log",
        },
        tasks={"main": [
            task("Check that the backup destination is set", "ansible.builtin.assert",
                 {"that": ["backups_url | length > 0"],
                  "fail_msg": "backups_url is empty: run with the region's inventory"}),
            apt("Install the APT repository tooling", ["python3-debian"],
                when="backups_schemes | intersect(['gs', 'azure']) | length > 0"),
            repository("Add Google Cloud's APT repository", "google-cloud-cli",
                       "https://packages.cloud.google.com/apt", "cloud-sdk",
                       "https://packages.cloud.google.com/apt/doc/apt-key.gpg", when="'gs' in backups_schemes"),
            repository("Add Microsoft's Azure CLI repository", "azure-cli",
                       "https://packages.microsoft.com/repos/azure-cli/", "{{ ansible_facts.distribution_release }}",
                       "https://packages.microsoft.com/keys/microsoft.asc", when="'azure' in backups_schemes"),
            apt("Install the storage command-line tools of the backup destinations",
                "{{ backups_schemes | map('extract', backups_cli_packages) | flatten }}"),
            # Debian 12's cloud images ship without cron, and the cron module needs its crontab even to write a file
            # of /etc/cron.d: the schedules below failed to install, and without cron nothing would run them
            apt("Install cron, which runs the schedules", ["cron"], register="backups_cron_install"),
            service("Run cron, now and at boot", "cron", r),
            copy("Install the backup script", "{{ backups_script }}", mode="0750", src="platformc-backup.sh"),
            task("Create the backup log directory", "ansible.builtin.file",
                 {"path": "{{ backups_log_dir }}", "state": "directory", "owner": "root", "group": "root",
                  "mode": "0750"}),
            task("Schedule each backup from the spec", "ansible.builtin.cron", {
                # the entry's name within its file, as it was before standby jobs (a new name would add a second job)
                "name": "platformc backup {{ backups_job.name }} ({{ backups_job.kind }}"
                        "{{ (', ' ~ backups_job.instance) if backups_job.instance is defined else '' }})",
                "cron_file": "platformc-backup-{{ backups_job_id }}",
                "user": "root",
                "minute": "{{ backups_job.minute }}", "hour": "{{ backups_job.hour }}",
                "day": "{{ backups_job.day }}", "month": "{{ backups_job.month }}",
                "weekday": "{{ backups_job.weekday }}",
                "job": "{{ backups_script }} {{ backups_job_args }} >> {{ backups_job_log }} 2>&1",
            }, **each_job, when=on_this_host),
            task("Create node_exporter's textfile directory", "ansible.builtin.file",
                 {"path": "{{ backups_textfile_dir }}", "state": "directory", "mode": "0755"}),
            # once (force: false): when the schedule first ran here is what a schedule that never succeeded is judged
            # from (monitoring's BackupNeverRecorded); a DR standby cluster's jobs record nothing, as their script runs
            copy("Record when each schedule was first installed (monitoring judges a schedule that never succeeded)",
                 "{{ backups_textfile_dir }}/platformc_backup_scheduled_{{ backups_job.kind }}_{{ backups_job.name }}.prom",
                 content="".join([
                     f"# HELP {BACKUP_SCHEDULED_METRIC} When the backup schedule was first installed on this host "
                     "(platformc backups role).\n",
                     f"# TYPE {BACKUP_SCHEDULED_METRIC} gauge\n",
                     f'{BACKUP_SCHEDULED_METRIC}{{kind="{{{{ backups_job.kind }}}}",schedule="{{{{ backups_job.name }}}}"}} '
                     "{{ ansible_facts.date_time.epoch }}\n"]),
                 force=False, **each_job, when=[on_this_host, "backups_job.pg_port is not defined"]),
        ]},
    )
