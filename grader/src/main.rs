fn main() {
    std::process::exit(hardlab_grader::cli::main());
}
