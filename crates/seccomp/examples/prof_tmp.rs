use libseccomp::*;
fn main() {
    for archs in [
        vec![ScmpArch::X8664],
        vec![ScmpArch::X32],
        vec![ScmpArch::X86],
    ] {
        let mut ctx = ScmpFilterContext::new(ScmpAction::Errno(1)).unwrap();
        ctx.remove_arch(ScmpArch::native()).unwrap();
        for a in &archs {
            ctx.add_arch(*a).unwrap();
        }
        for n in ["umask", "socket", "getpid"] {
            ctx.add_rule(ScmpAction::Allow, ScmpSyscall::from_name(n).unwrap())
                .unwrap();
        }
        ctx.export_pfc(std::io::stdout()).unwrap();
    }
}
