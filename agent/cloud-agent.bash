# bash completion for cloud-agent: commands and long options (keep in step
# with usage() in agent/main.c). Installed as
# share/bash-completion/completions/cloud-agent.

_cloud_agent() {
    local cur prev cmd i
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD - 1]}

    local commands="run join facts boot-once net version"
    local global="--connect --hypervisor --name --verbose --help --version"

    case $prev in
    --hypervisor)
        COMPREPLY=($(compgen -W "qemu kvm test" -- "$cur"))
        return
        ;;
    --state-dir | --pki-dir | --cache-dir | --images)
        COMPREPLY=($(compgen -d -- "$cur"))
        return
        ;;
    --ca | --cert | --key | --kernel | --initrd | --log | --config-file | --plan | --file)
        COMPREPLY=($(compgen -f -- "$cur"))
        return
        ;;
    esac

    cmd=
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
        run | join | facts | boot-once | net | version)
            cmd=${COMP_WORDS[i]}
            break
            ;;
        esac
    done
    case $cmd in
    "")
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$global" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        fi
        ;;
    run)
        COMPREPLY=($(compgen -W "--controller --ca --cert --key --labels
            --images --state-dir --pki-dir --cap-vcpus --cap-memory
            --cache-dir --cache-max-mib --network --host-network
            --underlay-address $global" -- "$cur"))
        ;;
    join)
        COMPREPLY=($(compgen -W "--controller --token --ca-pin --pki-dir
            --state-dir $global" -- "$cur"))
        ;;
    boot-once)
        COMPREPLY=($(compgen -W "--kernel --initrd --cmdline --log --channel
            --config-file --send --expect-exit --marker --timeout --id --vcpus
            --memory $global" -- "$cur"))
        ;;
    net)
        if ((COMP_CWORD == i + 1)); then
            COMPREPLY=($(compgen -W "apply remove policy" -- "$cur"))
        elif [[ ${COMP_WORDS[i + 1]} == policy ]]; then
            COMPREPLY=($(compgen -W "--file --remove --help" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "--plan" -- "$cur"))
        fi
        ;;
    esac
}
complete -F _cloud_agent cloud-agent
